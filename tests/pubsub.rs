//! `examples/pubsub` as its users meet it: the built example runs as a child process on
//! 127.0.0.1 and real clients use its command-line contract (topics, `--rate`,
//! `--max-connections`).

mod common;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use common::{raw_exchange, read_until_end, status_of, upgrade_request, RawConn};
use stdws::{Error, Message, WebSocket};

const DEADLINE: Duration = Duration::from_secs(10);

/// The example binary, built once (by this test too, so that `cargo test --test pubsub`
/// alone works) next to the test binaries.
fn example() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let status = Command::new(env!("CARGO"))
                .args(["build", "--quiet", "--example", "pubsub"])
                .current_dir(env!("CARGO_MANIFEST_DIR"))
                .status()
                .expect("run cargo build");
            assert!(status.success(), "cargo build --example pubsub failed");
            let exe = std::env::current_exe().unwrap();
            let dir = exe.parent().unwrap().parent().unwrap();
            dir.join("examples")
                .join(format!("pubsub{}", std::env::consts::EXE_SUFFIX))
        })
        .clone()
}

struct Relay {
    child: Child,
    addr: String,
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts the relay on a free port with `args`, waiting until it accepts connections.
fn relay(args: &[&str]) -> Relay {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr = format!("127.0.0.1:{port}");
    let child = Command::new(example())
        .arg(&addr)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", example().display()));
    let relay = Relay { child, addr };
    let until = Instant::now() + DEADLINE;
    while TcpStream::connect(&relay.addr).is_err() {
        assert!(Instant::now() < until, "the relay did not start listening");
        thread::sleep(Duration::from_millis(20));
    }
    relay
}

fn join(relay: &Relay, topic: &str) -> WebSocket<TcpStream> {
    let (ws, _) = stdws::connect(&format!("ws://{}/{topic}", relay.addr)).expect("connect");
    ws.get_ref().set_read_timeout(Some(DEADLINE)).unwrap();
    ws
}

/// Joins `topic` and waits until the relay has subscribed it (its own message comes back).
fn join_ready(relay: &Relay, topic: &str, name: &str) -> WebSocket<TcpStream> {
    let mut ws = join(relay, topic);
    ws.send(Message::text(format!("hello from {name}")))
        .unwrap();
    assert_eq!(
        ws.read().unwrap(),
        Message::text(format!("hello from {name}"))
    );
    ws
}

#[test]
fn messages_reach_everyone_on_the_topic_verbatim_and_no_one_else() {
    let relay = relay(&[]);
    let mut a1 = join_ready(&relay, "a", "a1");
    let mut a2 = join_ready(&relay, "a", "a2");
    // a2's hello went to a1 too (the same topic).
    assert_eq!(a1.read().unwrap(), Message::text("hello from a2"));
    let mut b = join_ready(&relay, "b", "b");
    let text = Message::text("price 101.5 ✓");
    let binary = Message::Binary((0..=255).collect());
    a1.send(text.clone()).unwrap();
    a1.send(binary.clone()).unwrap();
    for ws in [&mut a1, &mut a2] {
        assert_eq!(ws.read().unwrap(), text, "same opcode and payload");
        assert_eq!(ws.read().unwrap(), binary);
    }
    // b's next message is its own: it got nothing from topic "a".
    b.send(Message::text("only b")).unwrap();
    assert_eq!(b.read().unwrap(), Message::text("only b"));
}

#[test]
fn a_publisher_over_its_rate_is_closed_with_1008() {
    let relay = relay(&["--rate", "5"]);
    let mut ws = join(&relay, "fast");
    // The bucket holds 5: the sixth message in a burst is over the rate.
    for i in 0..20 {
        if ws.send(Message::text(format!("m{i}"))).is_err() {
            break;
        }
    }
    let until = Instant::now() + DEADLINE;
    loop {
        assert!(Instant::now() < until);
        match ws.read() {
            Ok(Message::Close(Some(frame))) => {
                assert_eq!(frame.code.as_u16(), 1008);
                break;
            }
            Ok(Message::Text(_)) => {} // our first messages, relayed back
            other => panic!("expected a close 1008, got {other:?}"),
        }
    }
}

#[test]
fn a_client_beyond_max_connections_is_answered_503() {
    let relay = relay(&["--max-connections", "2"]);
    let _one = join_ready(&relay, "t", "one");
    let _two = join_ready(&relay, "t", "two");
    match stdws::connect(&format!("ws://{}/t", relay.addr)) {
        Err(Error::Http(response)) => {
            assert_eq!(response.status(), 503);
            assert_eq!(response.header("Retry-After"), Some("5"));
        }
        other => panic!("expected 503, got {:?}", other.map(|_| ())),
    }
}

/// The handshakes are read on one thread over non-blocking sockets: clients that stall in
/// the middle of their request hold nothing up, and the relay still answers each of them
/// once its request is whole, then serves it like any other.
#[test]
fn clients_stalled_mid_handshake_do_not_hold_up_the_others() {
    let relay = relay(&[]);
    let addr = relay.addr.parse().unwrap();
    let request = upgrade_request("/slow");
    let (head, rest) = request.as_bytes().split_at(40);
    let mut stalled: Vec<RawConn> = (0..50)
        .map(|_| {
            let mut conn = RawConn::connect(addr);
            conn.send(head);
            conn
        })
        .collect();
    // Meanwhile a whole client connects and is served.
    let started = Instant::now();
    let mut ws = join_ready(&relay, "slow", "quick");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // The stalled ones finish their requests and become subscribers of the same topic.
    for conn in &mut stalled {
        conn.send(rest);
        let head = conn.read_head();
        assert_eq!(status_of(&head), 101, "{head}");
    }
    ws.send(Message::text("to all")).unwrap();
    assert_eq!(ws.read().unwrap(), Message::text("to all"));
    for conn in &mut stalled {
        let frame = conn.read_frame();
        assert_eq!((frame.opcode, &frame.payload[..]), (0x1, &b"to all"[..]));
    }
}

/// A request that is not a WebSocket upgrade is answered (400) and closed; a client that
/// sends nothing is closed once the 10 s handshake timeout has passed.
#[test]
fn bad_and_silent_handshakes_are_answered_and_closed() {
    let relay = relay(&[]);
    let addr = relay.addr.parse().unwrap();
    let silent = TcpStream::connect(addr).unwrap();
    let opened = Instant::now();
    let answer = raw_exchange(addr, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(matches!(status_of(&answer), 400 | 426), "{answer}");

    let (got, ended) = read_until_end(&silent, Duration::from_secs(20));
    ended.expect("closed, not timed out");
    assert!(
        got.is_empty(),
        "a silent client gets no answer, only the end of the stream"
    );
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_secs(9) && waited < Duration::from_secs(15),
        "closed after {waited:?}"
    );
}
