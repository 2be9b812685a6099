//! Broadcast through `Fanout`/`Topic` to many real connections over 127.0.0.1: every
//! subscriber that keeps up gets every message intact and in order, a subscriber that stops
//! reading is cut (over its budget, or stalled) without holding the others up.

mod common;

use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use common::spawn_bounded;
use stdws::{Config, Cut, Fanout, FanoutConfig, Message, PreparedMessage, Subscription, Topic};

const DEADLINE: Duration = Duration::from_secs(30);

/// A server that accepts `n` connections, splits each, subscribes its writing half to
/// `topic` and keeps reading it (answering pings and closes) until it ends. Returns the
/// address and a channel that gets each subscription's fate when its reader ends.
fn serve_topic(
    topic: &Topic,
    n: usize,
    config: Config,
) -> (String, mpsc::Receiver<Option<Cut>>, mpsc::Receiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("ws://{}/news", listener.local_addr().unwrap());
    let (fates, fates_rx) = mpsc::channel();
    let (ready, ready_rx) = mpsc::channel();
    let topic = topic.clone();
    thread::spawn(move || {
        for _ in 0..n {
            let (stream, _) = listener.accept().unwrap();
            let ws = stdws::accept_with(stream, config.clone(), |_, _| Ok(())).unwrap();
            let (mut reader, writer) = ws.split().unwrap();
            let subscription: Subscription = topic.subscribe(writer).unwrap();
            let fates = fates.clone();
            thread::spawn(move || {
                while reader.read().is_ok() {}
                let _ = fates.send(subscription.cut());
            });
            ready.send(()).unwrap();
        }
    });
    (url, fates_rx, ready_rx)
}

fn client(url: &str, config: Config) -> stdws::WebSocket<TcpStream> {
    let (ws, _) = stdws::ClientBuilder::new(url)
        .config(config)
        .connect()
        .expect("connect");
    ws.get_ref().set_read_timeout(Some(DEADLINE)).unwrap();
    ws
}

/// Payloads of every size class: empty, 7-bit, 16-bit and 64-bit lengths, up to 1 MiB.
fn payloads() -> Vec<Vec<u8>> {
    [
        0usize,
        1,
        125,
        126,
        511,
        512,
        4096,
        65_535,
        65_536,
        300_000,
        1 << 20,
    ]
    .iter()
    .enumerate()
    .map(|(k, &len)| (0..len).map(|i| (i * 31 + k * 7) as u8).collect())
    .collect()
}

fn broadcast_intact(compress: bool) {
    let fanout: Fanout = Fanout::new(FanoutConfig::default().budget(8 << 20)).unwrap();
    let topic = fanout.topic();
    let mut config = Config::default().max_message_size(Some(2 << 20));
    if compress {
        config = deflate(config);
    }
    let clients = 20;
    let (url, _fates, ready) = serve_topic(&topic, clients, config.clone());
    let readers: Vec<_> = (0..clients)
        .map(|_| {
            let mut ws = client(&url, config.clone());
            ready.recv_timeout(DEADLINE).unwrap();
            spawn_bounded(move || {
                let mut got = Vec::new();
                for _ in 0..payloads().len() * 2 {
                    got.push(ws.read().expect("a broadcast message"));
                }
                got
            })
        })
        .collect();
    assert_eq!(topic.len(), clients);
    let mut want = Vec::new();
    for payload in payloads() {
        let text = String::from_utf8_lossy(&payload).into_owned();
        for message in [Message::Binary(payload.clone()), Message::Text(text)] {
            let prepared = PreparedMessage::from_message(&message).unwrap();
            let delivery = topic.broadcast(&prepared);
            assert_eq!(delivery.queued, clients);
            assert!(delivery.dropped.is_empty());
            want.push(message);
        }
    }
    for reader in readers {
        let got = reader.join(DEADLINE);
        assert_eq!(got.len(), want.len());
        for (i, (got, want)) in got.iter().zip(&want).enumerate() {
            assert!(
                got == want,
                "message {i}: {} bytes, want {}",
                got.len(),
                want.len()
            );
        }
    }
}

#[cfg(feature = "deflate")]
fn deflate(config: Config) -> Config {
    config.deflate(Some(stdws::DeflateConfig::default()))
}

#[cfg(not(feature = "deflate"))]
fn deflate(config: Config) -> Config {
    config
}

#[test]
fn every_subscriber_gets_every_broadcast_intact_and_in_order() {
    broadcast_intact(false);
}

/// With permessage-deflate negotiated, prepared messages go out uncompressed (RSV1 clear,
/// allowed per message by RFC 7692 §6) and arrive intact.
#[cfg(feature = "deflate")]
#[test]
fn broadcasts_arrive_intact_with_deflate_negotiated() {
    broadcast_intact(true);
}

/// A subscriber that stops reading fills its socket buffers, then its budget: it is cut and
/// reported, and the others get all messages, in order, while the broadcasts go on.
#[test]
fn a_stuck_subscriber_is_cut_and_the_others_get_everything_in_order() {
    let fanout: Fanout = Fanout::new(
        FanoutConfig::default()
            .budget(256 << 10)
            .max_stall(Duration::from_secs(60)),
    )
    .unwrap();
    let topic = fanout.topic();
    let healthy = 4;
    let (url, fates, ready) = serve_topic(&topic, healthy + 1, Config::default());
    let stuck = client(&url, Config::default());
    ready.recv_timeout(DEADLINE).unwrap();
    let count = 2000usize;
    let size = 16 << 10;
    // How many messages each healthy reader has; the publisher stays at most a few
    // messages (well under the budget) ahead of the slowest, so they keep up on any machine.
    let progress: Arc<Vec<AtomicUsize>> = Arc::new((0..healthy).map(|_| 0.into()).collect());
    let readers: Vec<_> = (0..healthy)
        .map(|r| {
            let mut ws = client(&url, Config::default());
            ready.recv_timeout(DEADLINE).unwrap();
            let progress = Arc::clone(&progress);
            spawn_bounded(move || {
                for seq in 0..count {
                    let m = ws.read().expect("message");
                    let data = m.as_bytes();
                    assert_eq!(data.len(), size);
                    let got = u32::from_be_bytes(data[..4].try_into().unwrap()) as usize;
                    assert_eq!(got, seq, "in order, none missing or twice");
                    progress[r].store(seq + 1, Ordering::Release);
                }
            })
        })
        .collect();
    let started = Instant::now();
    let mut dropped = Vec::new();
    for seq in 0..count {
        let mut payload = vec![seq as u8; size];
        payload[..4].copy_from_slice(&(seq as u32).to_be_bytes());
        let delivery = topic.broadcast(&PreparedMessage::binary(&payload));
        dropped.extend(delivery.dropped);
        let slowest = || {
            progress
                .iter()
                .map(|p| p.load(Ordering::Acquire))
                .min()
                .unwrap()
        };
        while seq + 1 - slowest() > 4 {
            assert!(started.elapsed() < DEADLINE, "the healthy readers stopped");
            thread::sleep(Duration::from_micros(200));
        }
    }
    assert_eq!(dropped.len(), 1, "exactly the stuck subscriber is cut");
    for reader in readers {
        reader.join(DEADLINE);
    }
    assert!(started.elapsed() < DEADLINE);
    // Its reader was woken (the socket is shut down) and saw why.
    assert_eq!(
        fates.recv_timeout(DEADLINE).unwrap(),
        Some(Cut::OverBudget),
        "the first reader to end is the stuck one's"
    );
    drop(stuck);
}

/// A subscriber whose socket takes nothing for `max_stall` is cut even under its budget.
#[test]
fn a_stalled_subscriber_is_cut_after_max_stall() {
    let fanout: Fanout = Fanout::new(
        FanoutConfig::default()
            .budget(64 << 20)
            .max_stall(Duration::from_millis(300)),
    )
    .unwrap();
    let topic = fanout.topic();
    let (url, fates, ready) = serve_topic(&topic, 1, Config::default());
    let stuck = client(&url, Config::default());
    ready.recv_timeout(DEADLINE).unwrap();
    let chunk = PreparedMessage::binary(&vec![7u8; 64 << 10]);
    let started = Instant::now();
    // Enough to fill the loopback socket buffers (a few MiB), under the budget.
    for _ in 0..200 {
        assert!(topic.broadcast(&chunk).dropped.is_empty());
    }
    let fate = fates
        .recv_timeout(DEADLINE)
        .expect("the stalled reader ends");
    assert_eq!(fate, Some(Cut::Stalled));
    assert!(started.elapsed() >= Duration::from_millis(300));
    drop(stuck);
}

/// Dropping a subscription unsubscribes; broadcasts skip it.
#[test]
fn dropping_a_subscription_unsubscribes() {
    let fanout: Fanout = Fanout::new(FanoutConfig::default()).unwrap();
    let topic = fanout.topic();
    let (url, _fates, ready) = serve_topic(&topic, 2, Config::default());
    let mut a = client(&url, Config::default());
    ready.recv_timeout(DEADLINE).unwrap();
    let b = client(&url, Config::default());
    ready.recv_timeout(DEADLINE).unwrap();
    assert_eq!(topic.len(), 2);
    // b leaves: its server reader ends and drops the subscription.
    drop(b);
    let until = Instant::now() + DEADLINE;
    while topic.len() != 1 {
        assert!(Instant::now() < until, "the subscription was not dropped");
        thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(topic.broadcast(&PreparedMessage::text("hi")).queued, 1);
    assert_eq!(a.read().unwrap(), Message::text("hi"));
}

/// The budget bounds a backlog, not one message: a message larger than the budget reaches a
/// subscriber that keeps up.
#[test]
fn a_message_larger_than_the_budget_reaches_a_subscriber_with_nothing_waiting() {
    let fanout: Fanout = Fanout::new(FanoutConfig::default().budget(1024)).unwrap();
    let topic = fanout.topic();
    let config = Config::default().max_message_size(Some(1 << 20));
    let (url, _fates, ready) = serve_topic(&topic, 1, config.clone());
    let mut ws = client(&url, config);
    ready.recv_timeout(DEADLINE).unwrap();
    let big = vec![3u8; 100_000];
    for _ in 0..3 {
        let delivery = topic.broadcast(&PreparedMessage::binary(&big));
        assert_eq!((delivery.queued, delivery.dropped.len()), (1, 0));
        assert_eq!(ws.read().unwrap(), Message::Binary(big.clone()));
        // The writer thread notes that nothing waits right after its write returned.
        thread::sleep(Duration::from_millis(100));
    }
}

/// The budget is what a subscriber's socket refused, not what waits for a writer thread: a
/// burst several times the budget, broadcast back to back, reaches every subscriber that
/// keeps reading, and none is cut (before, the subscribers the writer threads had not
/// reached yet were cut as soon as their mailboxes passed the budget).
#[test]
fn a_burst_larger_than_the_budget_reaches_every_reader() {
    let budget = 128 << 10;
    let fanout: Fanout = Fanout::new(FanoutConfig::default().budget(budget)).unwrap();
    let topic = fanout.topic();
    let n = 32;
    let (url, _fates, ready) = serve_topic(&topic, n, Config::default());
    let (count, size) = (64usize, 8 << 10);
    let readers: Vec<_> = (0..n)
        .map(|_| {
            let mut ws = client(&url, Config::default());
            ready.recv_timeout(DEADLINE).unwrap();
            spawn_bounded(move || {
                for seq in 0..count {
                    let m = ws.read().expect("message");
                    assert_eq!(m.as_bytes().len(), size);
                    assert_eq!(m.as_bytes()[0], seq as u8, "in order, none missing");
                }
            })
        })
        .collect();
    // 512 KiB, four times the budget, queued with no pause.
    let messages: Vec<_> = (0..count)
        .map(|seq| PreparedMessage::binary(&vec![seq as u8; size]))
        .collect();
    let mut dropped = 0;
    for message in &messages {
        let delivery = topic.broadcast(message);
        assert_eq!(delivery.queued + delivery.dropped.len(), n);
        dropped += delivery.dropped.len();
    }
    assert_eq!(dropped, 0, "healthy readers cut by a burst");
    for reader in readers {
        reader.join(DEADLINE);
    }
}
