//! Broadcast fan-out through `examples/chat.rs` over 127.0.0.1.
//!
//! ```text
//! cargo bench --bench fanout                 # N = 100 and 1,000 participants
//! cargo bench --bench fanout -- 100          # only N = 100
//! ```
//!
//! Builds the chat example, starts it as a child process, connects N stdws clients (one
//! thread each, 64 KiB stacks) plus one sender, and measures:
//! - latency: the sender sends paced messages (one every 20 ms, or 100 ms at N = 1,000); for
//!   each, the time from `send` to its arrival at the LAST of the N clients (p50/p99);
//! - throughput: the sender sends a burst; messages delivered per second = N × burst / time
//!   until every client has every message;
//! - the server's resident memory per participant (VmRSS with N connected, minus before).
//!
//! Client and server share the machine's cores, so the figures are for comparing runs on one
//! machine.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use stdws::Message;

fn main() {
    let filter: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let chat = build_chat();
    println!("Broadcast fan-out through examples/chat (thread per participant, 64 KiB stacks)");
    println!(
        "{:>6} {:>10} {:>10} {:>10} {:>14} {:>16}",
        "N", "p50 ms", "p99 ms", "max ms", "deliveries/s", "server KiB/conn"
    );
    for n in [100usize, 1000] {
        if !filter.is_empty() && !filter.contains(&n) {
            continue;
        }
        let r = run(&chat, n);
        println!(
            "{:>6} {:>10.2} {:>10.2} {:>10.2} {:>14.0} {:>16.1}",
            n, r.p50_ms, r.p99_ms, r.max_ms, r.deliveries_per_sec, r.kib_per_conn
        );
    }
}

struct Figures {
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
    deliveries_per_sec: f64,
    kib_per_conn: f64,
}

/// Builds `examples/chat.rs` in release mode and returns the binary's path.
fn build_chat() -> PathBuf {
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--quiet", "--example", "chat"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "cargo build --example chat failed");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target"));
    target.join("release/examples/chat")
}

/// The chat server as a child process; killed when dropped.
struct Server {
    child: Child,
    addr: String,
}

impl Server {
    fn start(chat: &PathBuf, max: usize) -> Server {
        let mut child = Command::new(chat)
            .args(["127.0.0.1:0", "--max-connections", &max.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start the chat example");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let addr = loop {
            let line = lines.next().expect("chat exited").expect("chat log");
            if let Some(rest) = line.strip_prefix("chat: listening on http://") {
                break rest.trim_end_matches('/').to_owned();
            }
        };
        // Keep draining the log so the server never blocks on a full pipe.
        thread::spawn(move || for _ in lines {});
        Server { child, addr }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .expect("VmRSS")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn run(chat: &PathBuf, n: usize) -> Figures {
    let (paced, burst) = if n >= 1000 { (30, 20) } else { (100, 100) };
    let pace = if n >= 1000 {
        Duration::from_millis(100)
    } else {
        Duration::from_millis(20)
    };
    let total = paced + burst;
    let server = Server::start(chat, n + 1);
    thread::sleep(Duration::from_millis(200));
    let rss_before = server.rss_kib();
    let url = format!("ws://{}/ws", server.addr);

    // N receivers: each records when every probe message arrived.
    let ready = Arc::new(Barrier::new(n + 1));
    let mut receivers = Vec::with_capacity(n);
    for _ in 0..n {
        let (url, ready) = (url.clone(), Arc::clone(&ready));
        let handle = thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || receive(&url, &ready, total))
            .expect("spawn receiver");
        receivers.push(handle);
    }
    ready.wait();
    let rss_connected = server.rss_kib();
    // Every join was broadcast to everyone already connected (~N²/2 notices). A sentinel
    // queued behind them tells each receiver the backlog is gone; measure after that.
    let (mut sender, _) = stdws::connect(&url).expect("sender connects");
    sender.send_text("sync").expect("send sync");
    ready.wait();
    let mut sent = Vec::with_capacity(total);
    for id in 0..paced {
        sent.push(Instant::now());
        sender.send_text(&format!("probe {id}")).expect("send");
        thread::sleep(pace);
    }
    let burst_start = Instant::now();
    for id in paced..total {
        sent.push(Instant::now());
        sender.send_text(&format!("probe {id}")).expect("send");
    }

    let arrivals: Vec<Vec<Instant>> = receivers
        .into_iter()
        .map(|h| h.join().expect("receiver thread"))
        .collect();
    let last_at = |id: usize| arrivals.iter().map(|a| a[id]).max().expect("receivers");
    let mut latencies: Vec<f64> = (0..paced)
        .map(|id| (last_at(id) - sent[id]).as_secs_f64() * 1e3)
        .collect();
    latencies.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let burst_end = (paced..total).map(last_at).max().expect("burst");
    let burst_secs = (burst_end - burst_start).as_secs_f64();
    Figures {
        p50_ms: pct(0.5),
        p99_ms: pct(0.99),
        max_ms: *latencies.last().expect("latencies"),
        deliveries_per_sec: (n * burst) as f64 / burst_secs,
        kib_per_conn: (rss_connected.saturating_sub(rss_before)) as f64 / n as f64,
    }
}

/// One participant: connects, waits for everyone, drains the join backlog up to the "sync"
/// sentinel, then records the arrival time of each of the `total` probe messages (by the
/// id in its text).
fn receive(url: &str, ready: &Barrier, total: usize) -> Vec<Instant> {
    let (mut ws, _) = stdws::connect(url).expect("receiver connects");
    ws.get_ref()
        .set_read_timeout(Some(Duration::from_secs(60)))
        .expect("read timeout");
    ready.wait();
    loop {
        if let Message::Text(text) = ws.read().expect("receiver read") {
            if text.contains("\"text\":\"sync\"") {
                break;
            }
        }
    }
    ready.wait();
    let far_past = Instant::now();
    let mut arrived = vec![far_past; total];
    let mut got = 0;
    while got < total {
        let Message::Text(text) = ws.read().expect("receiver read") else {
            continue;
        };
        let now = Instant::now();
        if let Some(id) = probe_id(&text) {
            if id < total && arrived[id] == far_past {
                arrived[id] = now;
                got += 1;
            }
        }
    }
    arrived
}

/// The id in `{"type":"msg",...,"text":"probe 17"}`.
fn probe_id(json: &str) -> Option<usize> {
    let rest = json.split("\"text\":\"probe ").nth(1)?;
    rest.split('"').next()?.parse().ok()
}
