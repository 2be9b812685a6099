//! The client side of tests/cluster/run: pubsub instances in cluster mode (examples/cluster)
//! linked by a real `redis-server`, behind a real nginx. Ignored in the normal suite: it
//! needs what the script starts, and is told where by the environment:
//!
//! - `CLUSTER_NGINX`: nginx's address (`127.0.0.1:PORT`);
//! - `CLUSTER_INSTANCES`: the instances, `p1=127.0.0.1:PORT,p2=...,p3=...` (at least 3);
//! - `CLUSTER_CTL`: a directory through which the test asks the script to kill an instance
//!   or to stop and start Redis (it writes `request`, `N ACTION`; the script acts, then
//!   writes `N` to `ack`).
//!
//! ```sh
//! tests/cluster/run      # starts everything, runs this, stops everything
//! ```
//!
//! Checks, in order: (a) messages of two publishers reach every subscriber on every
//! instance, directly or through nginx, once each and in each publisher's order, text as
//! text and binary as binary; (b) an instance killed with SIGKILL: its clients reconnect
//! through nginx to the others within a few seconds and get what is published next;
//! (c) Redis stopped and started again: local delivery goes on meanwhile, cross-instance
//! delivery resumes by itself (the script then checks the instance's log for the count of
//! what it could not forward).
//!
//! The clients that reconnect use stdws's reconnecting client
//! (`ClientBuilder::reconnecting`, backoff from 50 ms up to 1 s), as a device would.

use std::collections::BTreeMap;
use std::fs;
use std::net::TcpStream;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use stdws::{Backoff, CloseCode, Message, StopHandle, WriteHalf};

/// Messages each publisher sends in (a), (b) and (c).
const MESSAGES_A: usize = 200;
const MESSAGES_B: usize = 100;
const MESSAGES_C: usize = 50;
/// Messages published on instance p1 while Redis is away; tests/cluster/run expects p1's log
/// to count at least this many as not forwarded.
const OUTAGE_MESSAGES: usize = 20;
/// How long an instance's clients may take to be back through nginx after it is killed.
const RECONNECT_WITHIN: Duration = Duration::from_secs(5);
const WAIT: Duration = Duration::from_secs(20);
/// How long Redis stays stopped in (c).
const REDIS_AWAY: Duration = Duration::from_secs(3);

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run tests/cluster/run"))
}

/// The instances' names and addresses, in order.
fn instances() -> Vec<(String, String)> {
    let list: Vec<(String, String)> = env("CLUSTER_INSTANCES")
        .split(',')
        .map(|item| {
            let (name, addr) = item.split_once('=').expect("NAME=ADDR");
            (name.to_owned(), addr.to_owned())
        })
        .collect();
    assert!(list.len() >= 3, "at least 3 instances");
    list
}

fn addr_of(name: &str) -> String {
    instances()
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no instance {name}"))
        .1
}

/// Asks tests/cluster/run to do `action` and waits until it is done.
fn control(action: &str) {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    let n = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    let dir = PathBuf::from(env("CLUSTER_CTL"));
    fs::write(dir.join("request.tmp"), format!("{n} {action}\n")).unwrap();
    fs::rename(dir.join("request.tmp"), dir.join("request")).unwrap();
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        if fs::read_to_string(dir.join("ack")).is_ok_and(|ack| ack.trim() == n.to_string()) {
            return;
        }
        assert!(Instant::now() < until, "the script did not do {action:?}");
        thread::sleep(Duration::from_millis(20));
    }
}

/// What a client saw.
#[derive(Default)]
struct Seen {
    /// Data messages, in arrival order.
    messages: Vec<Message>,
    /// The instance it is (or was last) connected to, from `X-Pubsub-Instance`.
    instance: String,
    /// Instances it was connected to, in order.
    history: Vec<String>,
    /// When it lost its connection and when it had a new one, for each reconnect.
    reconnects: Vec<(Instant, Instant)>,
    connected: bool,
}

/// A client on a topic, with a thread that reads it (and, if asked, reconnects it).
struct Client {
    label: String,
    seen: Arc<Mutex<Seen>>,
    writer: Arc<Mutex<Option<WriteHalf>>>,
    stop: Arc<AtomicBool>,
    /// Ends a wait between reconnects at once.
    stop_reconnecting: StopHandle,
    thread: Option<JoinHandle<()>>,
}

impl Client {
    /// Connects to `ws://addr/topic` (waiting until it is connected) and starts reading.
    fn start(label: &str, addr: &str, topic: &str, reconnect: bool) -> Client {
        let url = format!("ws://{addr}/{topic}");
        let seen = Arc::new(Mutex::new(Seen::default()));
        let writer = Arc::new(Mutex::new(None));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, w, st, l) = (
            Arc::clone(&seen),
            Arc::clone(&writer),
            Arc::clone(&stop),
            label.to_owned(),
        );
        let connections = stdws::ClientBuilder::new(&url)
            .reconnecting()
            .backoff(Backoff::new(
                Duration::from_millis(50),
                Duration::from_secs(1),
                2.0,
            ));
        let stop_reconnecting = connections.stop_handle();
        let thread = thread::spawn(move || {
            Client::run(&l, connections, reconnect, &s, &w, &st);
        });
        let client = Client {
            label: label.to_owned(),
            seen,
            writer,
            stop,
            stop_reconnecting,
            thread: Some(thread),
        };
        let until = Instant::now() + WAIT;
        while !client.seen.lock().unwrap().connected {
            let ended = client.thread.as_ref().is_some_and(JoinHandle::is_finished);
            assert!(
                !ended && Instant::now() < until,
                "{label}: could not connect"
            );
            thread::sleep(Duration::from_millis(5));
        }
        client
    }

    /// The client's thread: for each connection the reconnecting client makes (with
    /// backoff between failed attempts), read until it ends; without `reconnect`, only the
    /// first.
    fn run(
        label: &str,
        connections: stdws::Reconnecting<TcpStream>,
        reconnect: bool,
        seen: &Mutex<Seen>,
        writer: &Mutex<Option<WriteHalf>>,
        stop: &AtomicBool,
    ) {
        let mut lost: Option<Instant> = None;
        for connection in connections {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let (ws, response) =
                connection.unwrap_or_else(|e| panic!("{label}: not worth retrying: {e}"));
            ws.get_ref()
                .set_read_timeout(Some(Duration::from_millis(100)))
                .unwrap();
            let instance = response
                .header("X-Pubsub-Instance")
                .unwrap_or_else(|| panic!("{label}: no X-Pubsub-Instance header"))
                .to_owned();
            let (mut reader, w) = ws.split().unwrap();
            *writer.lock().unwrap() = Some(w);
            {
                let mut seen = seen.lock().unwrap();
                if let Some(at) = lost.take() {
                    seen.reconnects.push((at, Instant::now()));
                }
                seen.history.push(instance.clone());
                seen.instance = instance;
                seen.connected = true;
            }
            loop {
                match reader.read() {
                    Ok(m @ (Message::Text(_) | Message::Binary(_))) => {
                        seen.lock().unwrap().messages.push(m)
                    }
                    Ok(_) => {}
                    Err(e) if e.is_would_block() => {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                    }
                    Err(_) => break,
                }
            }
            seen.lock().unwrap().connected = false;
            *writer.lock().unwrap() = None;
            lost = Some(Instant::now());
            if !reconnect {
                return;
            }
        }
    }

    fn instance(&self) -> String {
        self.seen.lock().unwrap().instance.clone()
    }

    fn send(&self, message: Message) {
        let writer = self.writer.lock().unwrap();
        let writer = writer
            .as_ref()
            .unwrap_or_else(|| panic!("{}: not connected", self.label));
        writer.send(message).expect("send");
    }

    fn messages(&self) -> Vec<Message> {
        self.seen.lock().unwrap().messages.clone()
    }

    fn has(&self, wanted: &Message) -> bool {
        self.seen.lock().unwrap().messages.contains(wanted)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.stop_reconnecting.stop();
        if let Some(w) = self.writer.lock().unwrap().as_ref() {
            let _ = w.close(CloseCode::NORMAL, "");
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Data message `seq` of publisher `publisher` in round `round`: text when `seq` is even,
/// binary when odd, so that both opcodes cross Redis.
fn data(round: &str, publisher: &str, seq: usize) -> Message {
    let body = format!("{round}:{publisher}:{seq}");
    match seq % 2 {
        0 => Message::Text(body),
        _ => Message::Binary(body.into_bytes()),
    }
}

fn end(round: &str, publisher: &str) -> Message {
    Message::text(format!("{round}:{publisher}:end"))
}

/// Publishes probes from `publishers` until every one of `subscribers` has one from each:
/// then every instance involved has subscribed to the topic in Redis. Returns how long it
/// took.
fn until_linked(round: &str, publishers: &[&Client], subscribers: &[&Client]) -> Duration {
    let started = Instant::now();
    for n in 0.. {
        let mut probes = Vec::new();
        for p in publishers {
            let probe = Message::text(format!("probe:{round}:{}:{n}", p.label));
            p.send(probe.clone());
            probes.push(probe);
        }
        // Give this round of probes a little while before sending more.
        let round_until = Instant::now() + Duration::from_millis(200);
        loop {
            let linked = subscribers.iter().all(|s| {
                let messages = s.messages();
                publishers.iter().all(|p| {
                    let prefix = format!("probe:{round}:{}:", p.label);
                    messages
                        .iter()
                        .any(|m| m.as_text().is_some_and(|t| t.starts_with(&prefix)))
                })
            });
            if linked {
                return started.elapsed();
            }
            if Instant::now() >= round_until {
                break;
            }
            thread::sleep(Duration::from_millis(10));
        }
        assert!(
            started.elapsed() < WAIT,
            "{round}: the instances did not link up within {WAIT:?}"
        );
    }
    unreachable!()
}

/// Each publisher sends `count` data messages and an end marker; checks that every
/// subscriber gets each publisher's messages exactly once, in order, with their opcodes,
/// and nothing else but probes and messages starting with one of `also` (earlier ones on
/// the same topic).
fn publish_and_check(
    round: &str,
    publishers: &[&Client],
    subscribers: &[&Client],
    count: usize,
    also: &[&str],
) {
    let started = Instant::now();
    thread::scope(|s| {
        for p in publishers {
            s.spawn(move || {
                for seq in 0..count {
                    p.send(data(round, &p.label, seq));
                }
                p.send(end(round, &p.label));
            });
        }
    });
    let until = Instant::now() + WAIT;
    for sub in subscribers {
        for p in publishers {
            while !sub.has(&end(round, &p.label)) {
                assert!(
                    Instant::now() < until,
                    "{round}: {} (on {}) did not get {}'s end marker",
                    sub.label,
                    sub.instance(),
                    p.label
                );
                thread::sleep(Duration::from_millis(10));
            }
        }
    }
    let delivered = started.elapsed();
    // A duplicate would come right behind the original: give it time to show.
    thread::sleep(Duration::from_millis(500));
    for sub in subscribers {
        let messages = sub.messages();
        for p in publishers {
            let prefix = format!("{round}:{}:", p.label);
            let got: Vec<&Message> = messages
                .iter()
                .filter(|m| {
                    let bytes = match m {
                        Message::Text(t) => t.as_bytes(),
                        Message::Binary(b) => b,
                        _ => return false,
                    };
                    bytes.starts_with(prefix.as_bytes())
                })
                .collect();
            let mut want: Vec<Message> = (0..count).map(|i| data(round, &p.label, i)).collect();
            want.push(end(round, &p.label));
            if got.len() != want.len() || got.iter().zip(&want).any(|(g, w)| *g != w) {
                let first_bad = got
                    .iter()
                    .zip(&want)
                    .position(|(g, w)| *g != w)
                    .unwrap_or(got.len().min(want.len()));
                panic!(
                    "{round}: {} (on {}) got {} message(s) from {}, want {} once each in order; \
                     first difference at #{first_bad}: got {:?}, want {:?}",
                    sub.label,
                    sub.instance(),
                    got.len(),
                    p.label,
                    want.len(),
                    got.get(first_bad),
                    want.get(first_bad),
                );
            }
        }
        let unexpected: Vec<&Message> = messages
            .iter()
            .filter(|m| {
                let text = match m {
                    Message::Text(t) => t.clone(),
                    Message::Binary(b) => String::from_utf8_lossy(b).into_owned(),
                    _ => return true,
                };
                !text.starts_with("probe:")
                    && !also.iter().any(|prefix| text.starts_with(prefix))
                    && !publishers
                        .iter()
                        .any(|p| text.starts_with(&format!("{round}:{}:", p.label)))
            })
            .collect();
        assert!(
            unexpected.is_empty(),
            "{round}: {} got messages it should not have: {:?}",
            sub.label,
            &unexpected[..unexpected.len().min(5)]
        );
    }
    println!(
        "cluster: {round}: {} publisher(s) x {count} message(s) reached {} subscriber(s) once \
         each, in order, in {:.0} ms",
        publishers.len(),
        subscribers.len(),
        delivered.as_secs_f64() * 1000.0
    );
}

fn on_instances(clients: &[Client]) -> BTreeMap<String, usize> {
    let mut count = BTreeMap::new();
    for c in clients {
        *count.entry(c.instance()).or_insert(0) += 1;
    }
    count
}

/// (a) Two publishers, one on p1 and one on p3, each connected directly; two subscribers
/// directly on each instance and three through nginx.
fn fan_out_across_instances() {
    let nginx = env("CLUSTER_NGINX");
    let topic = "round-a";
    let mut subs: Vec<Client> = Vec::new();
    for (name, addr) in instances() {
        for k in 0..2 {
            subs.push(Client::start(
                &format!("{name}-sub{k}"),
                &addr,
                topic,
                false,
            ));
        }
    }
    for k in 0..3 {
        subs.push(Client::start(
            &format!("nginx-sub{k}"),
            &nginx,
            topic,
            false,
        ));
    }
    let pa = Client::start("pubA", &addr_of("p1"), topic, false);
    let pb = Client::start("pubB", &addr_of("p3"), topic, false);
    let everyone: Vec<&Client> = subs.iter().chain([&pa, &pb]).collect();
    println!(
        "cluster: a: {} subscribers by instance {:?}; publishers on p1 and p3",
        everyone.len(),
        on_instances(&subs)
    );
    let took = until_linked("a", &[&pa, &pb], &everyone);
    println!("cluster: a: instances linked through Redis in {took:?}");
    publish_and_check("a", &[&pa, &pb], &everyone, MESSAGES_A, &[]);
}

/// (b) Nine clients through nginx; the instance with some of them is killed; they must be
/// back on the others within `RECONNECT_WITHIN` and get what is published next.
fn failover_through_nginx() {
    let nginx = env("CLUSTER_NGINX");
    let topic = "round-b";
    let victim = "p2";
    let mut subs: Vec<Client> = Vec::new();
    for k in 0..30 {
        subs.push(Client::start(&format!("nginx-sub{k}"), &nginx, topic, true));
        if k >= 8 && subs.iter().any(|c| c.instance() == victim) {
            break;
        }
    }
    let before = on_instances(&subs);
    println!(
        "cluster: b: {} clients through nginx by instance {before:?}",
        subs.len()
    );
    let on_victim: Vec<&Client> = subs.iter().filter(|c| c.instance() == victim).collect();
    assert!(!on_victim.is_empty(), "b: nginx sent no client to {victim}");
    let publisher = Client::start("pubA", &addr_of("p1"), topic, false);
    control(&format!("kill {victim}"));
    let killed = Instant::now();
    let until = killed + WAIT;
    for c in &on_victim {
        loop {
            let seen = c.seen.lock().unwrap();
            if seen.connected && seen.instance != victim {
                break;
            }
            drop(seen);
            assert!(Instant::now() < until, "b: {} did not reconnect", c.label);
            thread::sleep(Duration::from_millis(10));
        }
    }
    let mut slowest = Duration::ZERO;
    for c in &on_victim {
        let seen = c.seen.lock().unwrap();
        let (lost, back) = *seen.reconnects.last().expect("a reconnect");
        slowest = slowest.max(back.duration_since(lost.min(killed)));
        println!(
            "cluster: b: {} {} -> {}: connection lost {:.0} ms after the kill, back {:.0} ms later",
            c.label,
            victim,
            seen.instance,
            lost.saturating_duration_since(killed).as_secs_f64() * 1000.0,
            back.duration_since(lost).as_secs_f64() * 1000.0
        );
    }
    assert!(
        slowest <= RECONNECT_WITHIN,
        "b: clients of {victim} took {slowest:?} to be back (limit {RECONNECT_WITHIN:?})"
    );
    for c in &subs {
        let seen = c.seen.lock().unwrap();
        assert!(
            seen.connected && seen.instance != victim,
            "b: {} not connected",
            c.label
        );
        if !on_victim.iter().any(|v| v.label == c.label) {
            assert!(
                seen.reconnects.is_empty(),
                "b: {} lost its connection too",
                c.label
            );
        }
    }
    println!(
        "cluster: b: {} client(s) of {victim} back within {:.0} ms; now by instance {:?}",
        on_victim.len(),
        slowest.as_secs_f64() * 1000.0,
        on_instances(&subs)
    );
    let everyone: Vec<&Client> = subs.iter().chain([&publisher]).collect();
    until_linked("b", &[&publisher], &everyone);
    publish_and_check("b", &[&publisher], &everyone, MESSAGES_B, &[]);
}

/// (c) Redis stopped, then started again: local delivery goes on, and delivery between
/// instances resumes by itself.
fn redis_restart() {
    let topic = "round-c";
    let (local, remote) = ("p1", "p3");
    let mut subs: Vec<Client> = Vec::new();
    for name in [local, remote] {
        for k in 0..2 {
            subs.push(Client::start(
                &format!("{name}-sub{k}"),
                &addr_of(name),
                topic,
                false,
            ));
        }
    }
    let publisher = Client::start("pubA", &addr_of(local), topic, false);
    let everyone: Vec<&Client> = subs.iter().chain([&publisher]).collect();
    until_linked("c0", &[&publisher], &everyone);

    control("stop-redis");
    let stopped = Instant::now();
    for seq in 0..OUTAGE_MESSAGES {
        publisher.send(Message::text(format!("outage:{seq}")));
    }
    let last = Message::text(format!("outage:{}", OUTAGE_MESSAGES - 1));
    let until = Instant::now() + WAIT;
    let on_local: Vec<&Client> = everyone
        .iter()
        .copied()
        .filter(|c| c.instance() == local)
        .collect();
    for c in &on_local {
        while !c.has(&last) {
            assert!(
                Instant::now() < until,
                "c: {} (on {local}) missed local messages",
                c.label
            );
            thread::sleep(Duration::from_millis(10));
        }
        let outage: Vec<Message> = c
            .messages()
            .into_iter()
            .filter(|m| m.as_text().is_some_and(|t| t.starts_with("outage:")))
            .collect();
        let want: Vec<Message> = (0..OUTAGE_MESSAGES)
            .map(|i| Message::text(format!("outage:{i}")))
            .collect();
        assert_eq!(
            outage, want,
            "c: {} (on {local}) during the outage",
            c.label
        );
    }
    println!(
        "cluster: c: Redis stopped; {OUTAGE_MESSAGES} message(s) published on {local} reached its \
         {} local subscriber(s) in order",
        on_local.len()
    );
    // Away long enough for the instances' reconnect backoff to grow past its first steps.
    thread::sleep(REDIS_AWAY);
    control("start-redis");
    let restarted = Instant::now();
    let took = until_linked("c1", &[&publisher], &everyone);
    println!(
        "cluster: c: Redis down {:.1} s; delivery across instances resumed {:.1} s after it was \
         back",
        restarted.duration_since(stopped).as_secs_f64(),
        took.as_secs_f64()
    );
    for c in everyone.iter().filter(|c| c.instance() == remote) {
        assert!(
            !c.messages()
                .iter()
                .any(|m| m.as_text().is_some_and(|t| t.starts_with("outage:"))),
            "c: {} (on {remote}) got a message that was published while Redis was away",
            c.label
        );
    }
    publish_and_check("c", &[&publisher], &everyone, MESSAGES_C, &["outage:"]);
}

#[test]
#[ignore = "needs redis-server, the pubsub instances and nginx: run tests/cluster/run"]
fn cluster() {
    // Fail early with a clear message if the script's parts are not there.
    for (name, addr) in instances() {
        TcpStream::connect(&addr).unwrap_or_else(|e| panic!("instance {name} at {addr}: {e}"));
    }
    fan_out_across_instances();
    failover_through_nginx();
    redis_restart();
    println!("cluster: all checks passed");
}

// ---------------------------------------------------------------------------------------
// Scale run (tests/cluster/run --scale INSTANCES SUBSCRIBERS; not in CI): many subscribers
// through nginx, spread over worker processes of this test binary (each under the 20,000
// open-files cap) and over the addresses nginx listens on (127.0.0.x, so that no one
// address pair runs out of ephemeral ports). The subscribers are raw sockets on one epoll
// loop per worker (mio): a thread each would not fit beside the instances' threads.

/// The environment of the scale run.
fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

/// VmRSS (KiB) of a process.
fn rss_kib(pid: u32) -> u64 {
    fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// The children of a process (nginx's workers).
fn children(pid: u32) -> Vec<u32> {
    let mut found = Vec::new();
    for entry in fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // pid (comm) state ppid ...: comm may hold spaces, so split after the last ')'.
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
        if ppid == Some(pid) {
            found.push(child);
        }
    }
    found
}

fn pids(var: &str) -> Vec<u32> {
    env(var).split(',').filter_map(|p| p.parse().ok()).collect()
}

#[test]
#[ignore = "a scale run: tests/cluster/run --scale INSTANCES SUBSCRIBERS"]
fn scale() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let total = env_or("SCALE_SUBSCRIBERS", 28_000);
    let procs = env_or("SCALE_PROCS", 4);
    let broadcasts = env_or("SCALE_BROADCASTS", 5);
    let targets: Vec<String> = env("SCALE_TARGETS").split(',').map(str::to_owned).collect();
    let instance_pids = pids("SCALE_INSTANCE_PIDS");
    let nginx = env("SCALE_NGINX_PID").parse::<u32>().unwrap();
    let memory = || -> (u64, u64) {
        let instances = instance_pids.iter().map(|&p| rss_kib(p)).sum();
        let workers = children(nginx).into_iter().map(rss_kib).sum();
        (instances, workers)
    };
    let (instances_before, nginx_before) = memory();

    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..procs {
        let count = total / procs + usize::from(w < total % procs);
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--ignored",
                "--exact",
                "scale_worker",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("SCALE_WORKER_TARGET", &targets[w % targets.len()])
            .env("SCALE_WORKER_COUNT", count.to_string())
            .env("SCALE_BROADCASTS", broadcasts.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start a worker");
        workers.push(child);
    }
    // Each worker's lines: "ready N MS", then "lat K US US ...".
    let (tx, rx) = std::sync::mpsc::channel::<(usize, String)>();
    for (w, child) in workers.iter_mut().enumerate() {
        let out = BufReader::new(child.stdout.take().unwrap());
        let tx = tx.clone();
        thread::spawn(move || {
            // The worker's own lines start with "@@" (libtest may put "test ... " before).
            for line in out.lines().map_while(Result::ok) {
                if let Some(at) = line.find("@@") {
                    let _ = tx.send((w, line[at + 2..].to_owned()));
                }
            }
        });
    }
    drop(tx);
    let mut ready = 0;
    let mut connected = 0;
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); broadcasts];
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut lines = Vec::new();
    while ready < procs {
        let left = deadline.saturating_duration_since(Instant::now());
        let (w, line) = rx
            .recv_timeout(left)
            .expect("workers did not connect in time");
        if let Some(rest) = line.strip_prefix("ready ") {
            let n: usize = rest.split(' ').next().unwrap().parse().unwrap();
            println!("scale: worker {w} ({}): {line}", targets[w % targets.len()]);
            connected += n;
            ready += 1;
        } else if line.starts_with("worker ") {
            println!("scale: {line}");
        } else {
            lines.push((w, line));
        }
    }
    let connect_time = started.elapsed();
    println!(
        "scale: {connected} of {total} subscribers connected through nginx in {:.1} s: {:.0} \
         connections/s",
        connect_time.as_secs_f64(),
        connected as f64 / connect_time.as_secs_f64()
    );
    thread::sleep(Duration::from_secs(2));
    let (instances_after, nginx_after) = memory();
    println!(
        "scale: RSS of the {} instance(s) {:.1} -> {:.1} MiB ({:.2} KiB per subscriber); nginx \
         workers {:.1} -> {:.1} MiB ({:.2} KiB per proxied connection)",
        instance_pids.len(),
        instances_before as f64 / 1024.0,
        instances_after as f64 / 1024.0,
        instances_after.saturating_sub(instances_before) as f64 / connected.max(1) as f64,
        nginx_before as f64 / 1024.0,
        nginx_after as f64 / 1024.0,
        nginx_after.saturating_sub(nginx_before) as f64 / connected.max(1) as f64,
    );
    for &pid in &instance_pids {
        let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let threads = status
            .lines()
            .find(|l| l.starts_with("Threads:"))
            .unwrap_or("Threads: ?");
        let fds = fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
        println!("scale: instance pid {pid}: {threads}, {fds} open files");
    }

    // The publisher: directly on the first instance.
    let (ws, _) = stdws::connect(&format!("ws://{}/scale", env("SCALE_PUBLISH"))).unwrap();
    let (mut reader, publisher) = ws.split().unwrap();
    let drain = thread::spawn(move || while reader.read().is_ok() {});
    thread::sleep(Duration::from_millis(500));
    for k in 0..broadcasts {
        publisher
            .send(Message::text(format!("bcast:{k}:{}", now_micros())))
            .unwrap();
        thread::sleep(Duration::from_secs(1));
    }
    let mut done = 0;
    while done < procs {
        let left = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(60);
        let Ok((w, line)) = rx.recv_timeout(left) else {
            break;
        };
        lines.push((w, line));
        if lines.last().unwrap().1 == "done" {
            done += 1;
        }
    }
    for (w, line) in &lines {
        let mut words = line.split(' ');
        match words.next() {
            Some("lat") => {
                let k: usize = words.next().unwrap().parse().unwrap();
                latencies[k].extend(words.filter_map(|v| v.parse::<u64>().ok()));
            }
            Some("done") => {}
            _ => println!("scale: worker {w}: {line}"),
        }
    }
    let _ = publisher.close(CloseCode::NORMAL, "");
    for mut child in workers {
        let _ = child.wait();
    }
    let _ = drain.join();
    let mut lasts = Vec::new();
    for (k, lat) in latencies.iter_mut().enumerate() {
        lat.sort_unstable();
        let last = lat.last().copied().unwrap_or(0);
        lasts.push(last);
        println!(
            "scale: broadcast {k}: reached {} of {connected}: p50 {:.1} ms, p99 {:.1} ms, last \
             {:.1} ms",
            lat.len(),
            percentile(lat, 0.5) as f64 / 1000.0,
            percentile(lat, 0.99) as f64 / 1000.0,
            last as f64 / 1000.0
        );
    }
    lasts.sort_unstable();
    println!(
        "scale: last delivery over {broadcasts} broadcasts: p50 {:.1} ms, max {:.1} ms",
        percentile(&lasts, 0.5) as f64 / 1000.0,
        lasts.last().copied().unwrap_or(0) as f64 / 1000.0
    );
    let reached = latencies.iter().map(Vec::len).min().unwrap_or(0);
    assert_eq!(connected, total, "not every subscriber connected");
    assert_eq!(reached, connected, "a broadcast missed subscribers");
}

/// One worker process of `scale`: opens its subscribers, says `ready`, then records when
/// each broadcast reaches each of them and prints the latencies (µs).
#[test]
#[ignore = "a worker process of the `scale` test"]
fn scale_worker() {
    use mio::{Events, Interest, Poll, Token};
    use std::io::{ErrorKind, Read, Write};

    let target = env("SCALE_WORKER_TARGET");
    let count = env_or("SCALE_WORKER_COUNT", 0);
    let broadcasts = env_or("SCALE_BROADCASTS", 5);
    let request = format!(
        "GET /scale HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let started = Instant::now();
    // The handshakes, blocking, 8 at a time.
    let failures = AtomicUsize::new(0);
    let streams: Mutex<Vec<std::net::TcpStream>> = Mutex::new(Vec::with_capacity(count));
    thread::scope(|s| {
        for t in 0..8 {
            let (request, target, streams, failures) = (&request, &target, &streams, &failures);
            s.spawn(move || {
                for _ in (t..count).step_by(8) {
                    let mut tries = 0;
                    loop {
                        match handshake(target, request) {
                            Ok(stream) => {
                                streams.lock().unwrap().push(stream);
                                break;
                            }
                            Err(e) if tries < 5 => {
                                tries += 1;
                                if tries == 1 {
                                    println!("@@worker {target}: {e}; retrying");
                                }
                                thread::sleep(Duration::from_millis(200));
                            }
                            Err(e) => {
                                println!("@@worker {target}: {e}; giving up on one");
                                failures.fetch_add(1, Ordering::Relaxed);
                                break;
                            }
                        }
                    }
                }
            });
        }
    });
    let streams = streams.into_inner().unwrap();
    println!(
        "@@ready {} {} ms ({} failed)",
        streams.len(),
        started.elapsed().as_millis(),
        failures.load(Ordering::Relaxed)
    );

    let mut poll = Poll::new().unwrap();
    let mut conns: Vec<(mio::net::TcpStream, Vec<u8>, usize)> = Vec::with_capacity(count);
    for (i, s) in streams.into_iter().enumerate() {
        s.set_nonblocking(true).unwrap();
        let mut s = mio::net::TcpStream::from_std(s);
        poll.registry()
            .register(&mut s, Token(i), Interest::READABLE)
            .unwrap();
        conns.push((s, Vec::new(), 0));
    }
    let mut latencies: Vec<Vec<u64>> = vec![Vec::new(); broadcasts];
    let mut events = Events::with_capacity(1024);
    let mut complete = 0; // connections that have every broadcast
    let deadline = Instant::now() + Duration::from_secs(broadcasts as u64 * 2 + 60);
    let mut chunk = [0u8; 4096];
    while complete < conns.len() && Instant::now() < deadline {
        poll.poll(&mut events, Some(Duration::from_millis(200)))
            .unwrap();
        for event in &events {
            let (stream, buf, got) = &mut conns[event.token().0];
            loop {
                match stream.read(&mut chunk) {
                    Ok(0) => break,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => break,
                }
            }
            let now = now_micros();
            // Server frames: unmasked, and small here.
            while buf.len() >= 2 {
                let (opcode, len, header) = match buf[1] & 0x7f {
                    126 if buf.len() >= 4 => (
                        buf[0] & 0x0f,
                        u16::from_be_bytes([buf[2], buf[3]]) as usize,
                        4,
                    ),
                    126 => break,
                    127 => panic!("a broadcast larger than 64 KiB"),
                    len => (buf[0] & 0x0f, len as usize, 2),
                };
                if buf.len() < header + len {
                    break;
                }
                let payload: Vec<u8> = buf[header..header + len].to_vec();
                buf.drain(..header + len);
                match opcode {
                    0x1 => {
                        let text = String::from_utf8_lossy(&payload);
                        let mut parts = text.split(':');
                        if parts.next() == Some("bcast") {
                            let k: usize = parts.next().unwrap().parse().unwrap();
                            let sent: u64 = parts.next().unwrap().parse().unwrap();
                            latencies[k].push(now.saturating_sub(sent));
                            *got += 1;
                            if *got == broadcasts {
                                complete += 1;
                            }
                        }
                    }
                    0x9 => {
                        // A keep-alive ping: the pong, masked with a zero key.
                        let mut pong = vec![0x8a, 0x80 | payload.len() as u8, 0, 0, 0, 0];
                        pong.extend_from_slice(&payload);
                        let _ = stream.write_all(&pong);
                    }
                    _ => {}
                }
            }
        }
    }
    for (k, lat) in latencies.iter().enumerate() {
        let values: Vec<String> = lat.iter().map(u64::to_string).collect();
        println!("@@lat {k} {}", values.join(" "));
    }
    println!("@@done");
}

/// A raw WebSocket handshake (the scale run's subscribers only read).
fn handshake(target: &str, request: &str) -> Result<std::net::TcpStream, String> {
    use std::io::{Read, Write};
    let addr: std::net::SocketAddr = target.parse().map_err(|e| format!("{target}: {e}"))?;
    let mut s = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(10))
        .map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .and_then(|()| s.write_all(request.as_bytes()))
        .map_err(|e| format!("request: {e}"))?;
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte)
            .map_err(|e| format!("response: {e}"))?;
        head.push(byte[0]);
    }
    match head.starts_with(b"HTTP/1.1 101 ") {
        true => Ok(s),
        false => Err(format!(
            "answer {:?}",
            String::from_utf8_lossy(&head).lines().next()
        )),
    }
}
