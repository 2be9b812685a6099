//! permessage-deflate client check and measurement: connects to a `ws://` echo server with
//! permessage-deflate offered (or not, with `--no-deflate`), sends JSON-like text messages,
//! checks that every echo equals what was sent, and reports what the connection cost.
//!
//! ```text
//! cargo run --release --features deflate --example deflate_bench -- URL [options]
//!
//!   --count N       messages measured per size (default 2000; 50 more go first, unmeasured)
//!   --size BYTES    approximate message size; repeat for several (default 200 and 2048)
//!   --batch B       messages written (corked) before their echoes are read (default 1)
//!   --level L       DeflateConfig::compression_level (default: the library's, 2)
//!   --no-deflate    do not offer permessage-deflate
//!   --require-deflate  exit 1 unless the server accepted permessage-deflate
//!   --seed S        generator seed (default 1)
//! ```
//!
//! Each size gets its own connection. The messages come from a deterministic generator
//! (orders with ids, names, e-mail addresses, timestamps and an array of line items), so two
//! runs with the same seed send the same bytes.
//!
//! Wire bytes are counted by a `Read + Write` wrapper around the `TcpStream` handed to
//! `ClientBuilder::client`; it also parses the frame headers going by, so it reports both
//! frame bytes (headers included) and payload bytes, and how many frames had RSV1 set (were
//! compressed) in each direction. The handshake is not counted. The payload ratio is
//! payload bytes on the wire / uncompressed message bytes, per direction.
//!
//! CPU time is this thread's time on a CPU (user and kernel, `/proc/thread-self/schedstat`,
//! in nanoseconds) over the measured messages: compressing, masking, writing, reading,
//! inflating and validating, plus building and comparing the messages (the same in both
//! modes). The server's CPU is not included.
//!
//! Output: a readable block per size, then one `RESULT key=value ...` line per size for
//! scripts (`benches/interop/run`). Exit status 1 on any mismatch or connection error.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::time::Instant;

use stdws::{ClientBuilder, Config, DeflateConfig, Message};

struct Options {
    url: String,
    count: usize,
    sizes: Vec<usize>,
    batch: usize,
    level: Option<u8>,
    deflate: bool,
    require_deflate: bool,
    seed: u64,
}

const WARMUP: usize = 50;

fn main() -> ExitCode {
    let opts = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("deflate_bench: {e}");
            eprintln!("usage: deflate_bench URL [--count N] [--size BYTES]... [--batch B] [--level L] [--no-deflate] [--require-deflate] [--seed S]");
            return ExitCode::from(2);
        }
    };
    for &size in &opts.sizes {
        if let Err(e) = run(&opts, size) {
            eprintln!("deflate_bench: size {size}: {e}");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

fn parse_args() -> Result<Options, String> {
    let mut args = std::env::args().skip(1);
    let mut opts = Options {
        url: String::new(),
        count: 2000,
        sizes: Vec::new(),
        batch: 1,
        level: None,
        deflate: true,
        require_deflate: false,
        seed: 1,
    };
    let num = |v: Option<String>, what: &str| -> Result<u64, String> {
        v.ok_or(format!("{what} needs a value"))?
            .parse()
            .map_err(|e| format!("{what}: {e}"))
    };
    while let Some(a) = args.next() {
        match a.as_str() {
            "--count" => opts.count = num(args.next(), "--count")? as usize,
            "--size" => opts.sizes.push(num(args.next(), "--size")? as usize),
            "--batch" => opts.batch = (num(args.next(), "--batch")? as usize).max(1),
            "--level" => opts.level = Some(num(args.next(), "--level")? as u8),
            "--seed" => opts.seed = num(args.next(), "--seed")?,
            "--no-deflate" => opts.deflate = false,
            "--require-deflate" => opts.require_deflate = true,
            s if s.starts_with("--") => return Err(format!("unknown option {s}")),
            s if opts.url.is_empty() => opts.url = s.to_owned(),
            s => return Err(format!("unexpected argument {s}")),
        }
    }
    if opts.url.is_empty() {
        return Err("no URL".into());
    }
    if opts.sizes.is_empty() {
        opts.sizes = vec![200, 2048];
    }
    Ok(opts)
}

fn run(opts: &Options, size: usize) -> Result<(), Box<dyn std::error::Error>> {
    let mut gen = Generator::new(opts.seed ^ (size as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let warmup: Vec<String> = (0..WARMUP).map(|_| gen.message(size)).collect();
    let messages: Vec<String> = (0..opts.count).map(|_| gen.message(size)).collect();
    let plain_bytes: u64 = messages.iter().map(|m| m.len() as u64).sum();

    let mut config = Config::default();
    if opts.deflate {
        let mut d = DeflateConfig::default();
        if let Some(level) = opts.level {
            d = d.compression_level(level);
        }
        config = config.deflate(Some(d));
    }
    let addr = host_port(&opts.url)?;
    let tcp = TcpStream::connect(&addr)?;
    tcp.set_nodelay(true)?;
    let (mut ws, response) = ClientBuilder::new(opts.url.clone())
        .config(config)
        .client(Counting::new(tcp))?;
    let extensions = response
        .header("Sec-WebSocket-Extensions")
        .unwrap_or("")
        .to_owned();
    let negotiated = extensions.contains("permessage-deflate");
    if opts.require_deflate && !negotiated {
        return Err(format!(
            "permessage-deflate not negotiated (Sec-WebSocket-Extensions: {extensions:?})"
        )
        .into());
    }
    ws.get_mut().active = true;

    exchange(&mut ws, &warmup, opts.batch)?;
    let sent0 = ws.get_ref().sent.clone();
    let recv0 = ws.get_ref().received.clone();
    let cpu0 = thread_cpu_ns()?;
    let t0 = Instant::now();
    exchange(&mut ws, &messages, opts.batch)?;
    let wall = t0.elapsed();
    let cpu = thread_cpu_ns()? - cpu0;
    let sent = ws.get_ref().sent.since(&sent0);
    let recv = ws.get_ref().received.since(&recv0);
    ws.close_and_wait(1000, "done", std::time::Duration::from_secs(5))?;

    let n = opts.count as f64;
    let mode = if !opts.deflate {
        "plain"
    } else if negotiated {
        "deflate"
    } else {
        "offered-refused"
    };
    println!(
        "{} size~{size} B, {} messages, batch {}: {mode}",
        opts.url, opts.count, opts.batch
    );
    println!(
        "  Sec-WebSocket-Extensions: {}",
        if extensions.is_empty() {
            "(none)"
        } else {
            &extensions
        }
    );
    println!(
        "  mean message {:.0} B; all {} echoes equal",
        plain_bytes as f64 / n,
        opts.count
    );
    for (dir, t) in [("sent", &sent), ("received", &recv)] {
        println!(
            "  {dir:8}: {} frames ({} with RSV1), payload {} B/msg ({:.3} of plain), frames {} B/msg",
            t.frames,
            t.rsv1_frames,
            fmt1(t.payload as f64 / n),
            t.payload as f64 / plain_bytes as f64,
            fmt1(t.bytes as f64 / n),
        );
    }
    println!(
        "  client CPU {:.2} us/msg, wall {:.2} us/msg",
        cpu as f64 / 1e3 / n,
        wall.as_secs_f64() * 1e6 / n
    );
    println!(
        "RESULT mode={mode} size={size} count={} batch={} plain_per_msg={:.1} sent_payload_ratio={:.4} recv_payload_ratio={:.4} sent_frame_per_msg={:.1} recv_frame_per_msg={:.1} sent_rsv1={} recv_rsv1={} cpu_us_per_msg={:.3} wall_us_per_msg={:.3} extensions={:?}",
        opts.count,
        opts.batch,
        plain_bytes as f64 / n,
        sent.payload as f64 / plain_bytes as f64,
        recv.payload as f64 / plain_bytes as f64,
        sent.bytes as f64 / n,
        recv.bytes as f64 / n,
        sent.rsv1_frames,
        recv.rsv1_frames,
        cpu as f64 / 1e3 / n,
        wall.as_secs_f64() * 1e6 / n,
        extensions,
    );
    Ok(())
}

fn fmt1(x: f64) -> String {
    format!("{x:.1}")
}

/// Sends the messages in groups of `batch` (queued, then one flush), reading each group's
/// echoes before the next, and checks every echo.
fn exchange<S: Read + Write>(
    ws: &mut stdws::WebSocket<S>,
    messages: &[String],
    batch: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    for group in messages.chunks(batch) {
        for m in group {
            ws.write(Message::Text(m.clone()))?;
        }
        ws.flush()?;
        for m in group {
            loop {
                match ws.read()? {
                    Message::Text(echo) if echo == *m => break,
                    Message::Text(echo) => {
                        return Err(format!(
                            "echo differs: sent {} B, got {} B ({:?}...)",
                            m.len(),
                            echo.len(),
                            &echo[..echo.len().min(60)]
                        )
                        .into())
                    }
                    Message::Ping(_) | Message::Pong(_) => continue,
                    other => return Err(format!("unexpected {other:?}").into()),
                }
            }
        }
    }
    Ok(())
}

/// `host:port` of a `ws://` URL, for `TcpStream::connect`.
fn host_port(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("{url}: only ws:// URLs"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or("");
    let has_port = match authority.rfind(']') {
        Some(i) => authority[i..].contains(':'),
        None => authority.contains(':'),
    };
    Ok(if has_port {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}

/// This thread's CPU time (user + system), in nanoseconds: the first field of
/// `/proc/thread-self/schedstat`.
fn thread_cpu_ns() -> io::Result<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    s.split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "bad schedstat"))
}

/// Byte and frame counts for one direction, from the frame headers going by.
#[derive(Clone, Default)]
struct Tally {
    bytes: u64,
    payload: u64,
    frames: u64,
    rsv1_frames: u64,
    /// Header bytes gathered so far for the frame being parsed.
    head: Vec<u8>,
    /// Payload bytes still to skip in the current frame.
    remaining: u64,
}

impl Tally {
    fn feed(&mut self, mut data: &[u8]) {
        self.bytes += data.len() as u64;
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data = &data[n..];
                continue;
            }
            self.head.push(data[0]);
            data = &data[1..];
            if self.head.len() < 2 {
                continue;
            }
            let len7 = self.head[1] & 0x7f;
            let masked = self.head[1] & 0x80 != 0;
            let ext = match len7 {
                126 => 2,
                127 => 8,
                _ => 0,
            };
            let need = 2 + ext + if masked { 4 } else { 0 };
            if self.head.len() < need {
                continue;
            }
            let len = match len7 {
                126 => u16::from_be_bytes([self.head[2], self.head[3]]) as u64,
                127 => u64::from_be_bytes(self.head[2..10].try_into().unwrap()),
                n => n as u64,
            };
            self.frames += 1;
            if self.head[0] & 0x40 != 0 {
                self.rsv1_frames += 1;
            }
            self.payload += len;
            self.remaining = len;
            self.head.clear();
        }
    }

    /// The counts accumulated since `earlier` (parser state is not compared).
    fn since(&self, earlier: &Tally) -> Tally {
        Tally {
            bytes: self.bytes - earlier.bytes,
            payload: self.payload - earlier.payload,
            frames: self.frames - earlier.frames,
            rsv1_frames: self.rsv1_frames - earlier.rsv1_frames,
            head: Vec::new(),
            remaining: 0,
        }
    }
}

/// A `TcpStream` that tallies what goes through it once `active` (after the handshake).
struct Counting {
    inner: TcpStream,
    active: bool,
    sent: Tally,
    received: Tally,
}

impl Counting {
    fn new(inner: TcpStream) -> Self {
        Counting {
            inner,
            active: false,
            sent: Tally::default(),
            received: Tally::default(),
        }
    }
}

impl stdws::Socket for Counting {
    fn set_read_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
        self.inner.set_read_timeout(t)
    }
    fn read_timeout(&self) -> io::Result<Option<std::time::Duration>> {
        self.inner.read_timeout()
    }
    fn set_write_timeout(&self, t: Option<std::time::Duration>) -> io::Result<()> {
        self.inner.set_write_timeout(t)
    }
    fn write_timeout(&self) -> io::Result<Option<std::time::Duration>> {
        self.inner.write_timeout()
    }
    fn shutdown(&self) -> io::Result<()> {
        self.inner.shutdown(std::net::Shutdown::Both)
    }
}

impl Read for Counting {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if self.active {
            self.received.feed(&buf[..n]);
        }
        Ok(n)
    }
}

impl Write for Counting {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        if self.active {
            self.sent.feed(&buf[..n]);
        }
        Ok(n)
    }

    fn write_vectored(&mut self, bufs: &[io::IoSlice<'_>]) -> io::Result<usize> {
        let n = self.inner.write_vectored(bufs)?;
        if self.active {
            let mut left = n;
            for b in bufs {
                let take = left.min(b.len());
                self.sent.feed(&b[..take]);
                left -= take;
                if left == 0 {
                    break;
                }
            }
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Deterministic JSON-like messages: xorshift64* over small word lists.
struct Generator {
    state: u64,
    seq: u64,
}

const FIRST: &[&str] = &[
    "Alice", "Bruno", "Chloé", "Dmitri", "Emeka", "Fatima", "Gustav", "Hana", "Ines", "Jonas",
    "Kenji", "Lucía", "Mateo", "Nadia", "Oskar", "Priya",
];
const LAST: &[&str] = &[
    "Moreau",
    "Okafor",
    "Lindqvist",
    "Tanaka",
    "Haddad",
    "Novak",
    "Fischer",
    "Costa",
    "Kowalski",
    "Nguyen",
    "Silva",
    "Petrov",
];
const CITIES: &[&str] = &[
    "Lyon",
    "Porto",
    "Gdańsk",
    "Osaka",
    "Nairobi",
    "Montréal",
    "Tartu",
    "Valparaíso",
];
const STATUS: &[&str] = &[
    "pending",
    "paid",
    "packed",
    "shipped",
    "delivered",
    "returned",
];
const PRODUCTS: &[&str] = &[
    "desk lamp",
    "USB-C cable",
    "notebook A5",
    "coffee beans 1kg",
    "wool socks",
    "water bottle",
    "headphones",
    "phone case",
    "tea sampler",
    "backpack",
    "keyboard",
    "monitor arm",
];
const TAGS: &[&str] = &[
    "gift",
    "express",
    "fragile",
    "bulk",
    "promo",
    "backorder",
    "eco",
];

impl Generator {
    fn new(seed: u64) -> Self {
        Generator {
            state: seed | 1,
            seq: 0,
        }
    }

    fn next(&mut self) -> u64 {
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len() as u64) as usize]
    }

    /// One message of about `size` bytes: an order event whose line items are added until
    /// the message reaches the size (the smallest has none).
    fn message(&mut self, size: usize) -> String {
        self.seq += 1;
        let first = self.pick(FIRST);
        let last = self.pick(LAST);
        let secs = 1_795_000_000 + self.seq * 7 + self.below(5);
        let (h, m, s) = ((secs / 3600) % 24, (secs / 60) % 60, secs % 60);
        let seq = self.seq;
        let mut out = format!(
            "{{\"type\":\"order.{}\",\"seq\":{},\"ts\":\"2026-11-{:02}T{h:02}:{m:02}:{s:02}.{:03}Z\",\
             \"customer\":{{\"id\":{},\"name\":\"{first} {last}\",\"email\":\"{}.{}@example.com\",\"city\":\"{}\"}},\
             \"currency\":\"EUR\",\"total\":{}.{:02}",
            self.pick(STATUS),
            seq,
            1 + (secs / 86400) % 28,
            self.below(1000),
            10_000 + self.below(90_000),
            first.to_lowercase(),
            last.to_lowercase(),
            self.pick(CITIES),
            self.below(500),
            self.below(100),
        );
        // Line items while they fit (room kept for the closing `]}`); small sizes get none.
        out.push_str(",\"items\":[");
        let mut first_item = true;
        loop {
            let item = format!(
                "{}{{\"sku\":\"SKU-{:05}\",\"name\":\"{}\",\"qty\":{},\"price\":{}.{:02},\"tags\":[\"{}\",\"{}\"]}}",
                if first_item { "" } else { "," },
                self.below(100_000),
                self.pick(PRODUCTS),
                1 + self.below(5),
                1 + self.below(200),
                self.below(100),
                self.pick(TAGS),
                self.pick(TAGS),
            );
            if out.len() + item.len() + 2 > size {
                break;
            }
            out.push_str(&item);
            first_item = false;
        }
        out.push(']');
        out.push('}');
        out
    }
}
