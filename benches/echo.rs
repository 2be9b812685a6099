//! In-memory echo benchmark: stdws against tungstenite, same loop, same bytes.
//!
//! ```text
//! cargo bench --bench echo                       # time every scenario, print a table
//! cargo bench --bench echo -- FILTER             # only scenarios whose name contains FILTER
//! ECHO_BENCH="stdws 'server bin 16B many' 1000" target/release/deps/echo-* # one run, for callgrind
//! ```
//!
//! A scenario is a stream of pre-built frames held in memory: masked client frames for the
//! server role, unmasked server frames for the client role. Each implementation reads every
//! message and writes it back (`write`, corked; one `flush` at the end) into a sink that
//! discards the bytes. "many/read": a read returns as much as the buffer takes; "1/read": a read
//! returns at most one frame, as a socket does when messages arrive one at a time.
//! `benches/callgrind.sh` turns the single-run mode into instructions per message.

use std::hint::black_box;
use std::io::{self, Read, Write};
use std::time::Instant;

/// An in-memory stream: reads come from `input` (one frame at most per read if `bounds` is
/// set), writes are counted and dropped.
struct Mem<'a> {
    input: &'a [u8],
    pos: usize,
    bounds: Option<&'a [usize]>,
    next_bound: usize,
    written: u64,
}

impl Read for Mem<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let end = match self.bounds {
            Some(b) => b[self.next_bound],
            None => self.input.len(),
        };
        let n = buf.len().min(end - self.pos);
        buf[..n].copy_from_slice(&self.input[self.pos..self.pos + n]);
        self.pos += n;
        if self.bounds.is_some()
            && self.pos == end
            && self.next_bound + 1 < self.bounds.unwrap().len()
        {
            self.next_bound += 1;
        }
        Ok(n)
    }
}

impl Write for Mem<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Role {
    Server,
    Client,
}

struct Scenario {
    name: String,
    role: Role,
    size: usize,
    text: bool,
    one_per_read: bool,
}

fn scenarios() -> Vec<Scenario> {
    let mut out = Vec::new();
    let mut add = |role, size, text, one_per_read| {
        let size_name = match size {
            s if s >= 1 << 20 => format!("{}MiB", s >> 20),
            s if s >= 1 << 10 => format!("{}KiB", s >> 10),
            s => format!("{s}B"),
        };
        out.push(Scenario {
            name: format!(
                "{} {} {size_name} {}",
                if role == Role::Server {
                    "server"
                } else {
                    "client"
                },
                if text { "text" } else { "bin" },
                if one_per_read { "1/read" } else { "many/read" }
            ),
            role,
            size,
            text,
            one_per_read,
        });
    };
    for size in [16, 1024] {
        for text in [false, true] {
            for one in [false, true] {
                add(Role::Server, size, text, one);
            }
        }
    }
    for size in [64 << 10, 1 << 20] {
        for text in [false, true] {
            add(Role::Server, size, text, false);
        }
    }
    add(Role::Client, 16, false, false);
    add(Role::Client, 64 << 10, false, false);
    out
}

/// A payload of `size` bytes: JSON-like ASCII, the common case for text messages. (Text
/// heavy in non-ASCII characters costs more in both libraries: std's UTF-8 validation, which
/// both use, leaves its ASCII fast path at every such character.)
fn payload(size: usize) -> Vec<u8> {
    let pattern = b"{\"id\":12345,\"name\":\"cafe\",\"tags\":[\"a\",\"b\"],\"ok\":true}";
    pattern.iter().copied().cycle().take(size).collect()
}

/// Encodes `count` frames; returns the bytes and where each frame ends.
fn build_input(s: &Scenario, count: usize) -> (Vec<u8>, Vec<usize>) {
    let data = payload(s.size);
    let mut out = Vec::with_capacity(count * (s.size + 14));
    let mut bounds = Vec::with_capacity(count);
    for i in 0..count {
        out.push(0x80 | if s.text { 1 } else { 2 });
        let mask_bit = if s.role == Role::Server { 0x80 } else { 0 };
        match s.size {
            n if n < 126 => out.push(mask_bit | n as u8),
            n if n <= 0xFFFF => {
                out.push(mask_bit | 126);
                out.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                out.push(mask_bit | 127);
                out.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        if s.role == Role::Server {
            let key = (i as u32).wrapping_mul(2654435761).to_be_bytes();
            out.extend_from_slice(&key);
            out.extend(data.iter().enumerate().map(|(j, b)| b ^ key[j & 3]));
        } else {
            out.extend_from_slice(&data);
        }
        bounds.push(out.len());
    }
    (out, bounds)
}

fn mem<'a>(s: &Scenario, input: &'a [u8], bounds: &'a [usize]) -> Mem<'a> {
    Mem {
        input,
        pos: 0,
        bounds: s.one_per_read.then_some(bounds),
        next_bound: 0,
        written: 0,
    }
}

/// The stdws echo loop; returns the bytes written. Not inlined: callgrind counts only inside.
#[inline(never)]
fn run_stdws(s: &Scenario, input: &[u8], bounds: &[usize], count: usize) -> u64 {
    let role = if s.role == Role::Server {
        stdws::Role::Server
    } else {
        stdws::Role::Client
    };
    let mut ws = stdws::WebSocket::from_raw_socket(
        mem(s, input, bounds),
        role,
        stdws::Config::default(),
        Vec::new(),
    );
    for _ in 0..count {
        let msg = ws.read().expect("stdws read");
        ws.write(black_box(msg)).expect("stdws write");
    }
    ws.flush().expect("stdws flush");
    ws.get_ref().written
}

/// The same loop with tungstenite: `write` queues (drained past its write buffer size).
#[inline(never)]
fn run_tungstenite(s: &Scenario, input: &[u8], bounds: &[usize], count: usize) -> u64 {
    use tungstenite::protocol::{Role as TRole, WebSocket};
    let role = if s.role == Role::Server {
        TRole::Server
    } else {
        TRole::Client
    };
    let mut ws = WebSocket::from_raw_socket(mem(s, input, bounds), role, None);
    for _ in 0..count {
        let msg = ws.read().expect("tungstenite read");
        ws.write(black_box(msg)).expect("tungstenite write");
    }
    ws.flush().expect("tungstenite flush");
    ws.get_ref().written
}

fn run(implementation: &str, s: &Scenario, input: &[u8], bounds: &[usize], count: usize) -> u64 {
    match implementation {
        "stdws" => run_stdws(s, input, bounds, count),
        "tungstenite" => run_tungstenite(s, input, bounds, count),
        other => panic!("unknown implementation {other}"),
    }
}

/// Messages per timed run: about 32 MiB of input, at most 200,000 messages.
fn count_for(s: &Scenario) -> usize {
    ((32 << 20) / (s.size + 14)).clamp(16, 200_000)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn main() {
    if std::env::var_os("ECHO_LIST").is_some() {
        for s in scenarios() {
            println!("{}", s.name);
        }
        return;
    }
    // Single run for callgrind: ECHO_BENCH="IMPL SCENARIO COUNT".
    if let Ok(spec) = std::env::var("ECHO_BENCH") {
        let (implementation, rest) = spec
            .split_once(' ')
            .expect("ECHO_BENCH=IMPL SCENARIO COUNT");
        let (name, count) = rest
            .rsplit_once(' ')
            .expect("ECHO_BENCH=IMPL SCENARIO COUNT");
        let count: usize = count.parse().expect("COUNT");
        let all = scenarios();
        let s = all
            .iter()
            .find(|s| s.name == name.trim_matches('\''))
            .expect("no such scenario");
        let (input, bounds) = build_input(s, count);
        black_box(run(implementation, s, &input, &bounds, count));
        return;
    }
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    println!("In-memory echo, ns per message (median of 7 runs); ratio = stdws / tungstenite");
    println!(
        "{:<28} {:>12} {:>14} {:>7}",
        "scenario", "stdws", "tungstenite", "ratio"
    );
    for s in scenarios() {
        if !filter.is_empty() && !filter.iter().any(|f| s.name.contains(f.as_str())) {
            continue;
        }
        let count = count_for(&s);
        let (input, bounds) = build_input(&s, count);
        let mut result = [0.0f64; 2];
        for (slot, implementation) in ["stdws", "tungstenite"].iter().enumerate() {
            let expected = run(implementation, &s, &input, &bounds, count); // warm-up
            let times = (0..7)
                .map(|_| {
                    let t = Instant::now();
                    let written = run(implementation, &s, &input, &bounds, count);
                    let elapsed = t.elapsed().as_nanos() as f64 / count as f64;
                    assert_eq!(written, expected);
                    elapsed
                })
                .collect();
            result[slot] = median(times);
        }
        println!(
            "{:<28} {:>12.1} {:>14.1} {:>7.2}",
            s.name,
            result[0],
            result[1],
            result[0] / result[1]
        );
    }
}
