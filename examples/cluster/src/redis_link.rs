//! The link between pubsub instances: Redis pub/sub, one Redis channel per topic.
//!
//! **Outgoing.** A message a local client publishes on topic `T` is delivered to the local
//! subscribers at once (by the relay), then queued here and published by one thread, over one
//! Redis connection, on the channel `stdws.pubsub:T`, tagged with this instance's name and
//! its opcode: `[b't' or b'b'][name length: 1 byte][name][payload]`. Several queued messages
//! go out in one pipeline.
//!
//! **Incoming.** Another thread holds a second connection in subscribe mode. It SUBSCRIBEs
//! to the channel of each topic that has local subscribers and UNSUBSCRIBEs from it when the
//! last one leaves (it looks at what changed every 50 ms, its read timeout). Not one
//! PSUBSCRIBE to `stdws.pubsub:*`: with it every instance would receive every message of
//! every topic, also of topics none of its clients want. A message whose
//! tag is this instance's own name is skipped: its local subscribers had it already. Any
//! other is framed once and given to the topic's local subscribers, text as text and binary
//! as binary.
//!
//! **Guarantees.** Each subscriber gets a message at most once: once locally if it was
//! published on its own instance (the copy that comes back from Redis is skipped), once from
//! Redis otherwise (an instance subscribes to a channel once, however many local subscribers
//! the topic has). Messages of one publisher arrive in the order it sent them, on every
//! instance: one reader thread per connection publishes them in order, one queue and one
//! Redis connection carry them in order, Redis sends them to each subscribed connection in
//! order, and each subscriber's mailbox keeps that order. There is no order *across*
//! publishers that all instances agree on: the subscribers on a publisher's own instance see
//! its messages before the other instances do, so two publishers' messages may interleave
//! differently on different instances.
//!
//! **What is lost.** Redis pub/sub is at-most-once: nothing is stored, nothing is re-sent.
//! - While Redis is away (or this instance cannot reach it), what local clients publish is
//!   delivered locally but not forwarded; the publisher thread counts it and logs the count
//!   when it reconnects (and with each failed attempt). A PUBLISH whose answer does not come
//!   is not retried (it may have been delivered, and a retry could deliver it twice): its
//!   batch is counted as not forwarded.
//! - Messages that other instances published while this instance's subscribe connection was
//!   down, or before its SUBSCRIBE to a new topic took effect (up to ~50 ms after a topic's
//!   first local subscriber arrives), never reach this instance, and it cannot count them.
//! - A subscriber that Redis cuts for reading too slowly (`client-output-buffer-limit
//!   pubsub`) loses what was in its buffer; it reconnects and resubscribes like after an
//!   outage.
//! - More than [`MAX_QUEUED`] bytes waiting to be published (Redis slower than the clients):
//!   the excess is counted as not forwarded.
//!
//! Reconnection: both threads retry with exponential backoff (100 ms doubling to 5 s, with
//! jitter), and the subscriber resubscribes to every topic that has local subscribers.

use std::collections::hash_map::RandomState;
use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redis::{Client, Connection, Msg};
use stdws::PreparedMessage;

use crate::pubsub::{Deliver, Link};

/// The Redis channel of topic `T` is `CHANNEL_PREFIX` + `T` (`T` is the path, `/prices`).
pub const CHANNEL_PREFIX: &str = "stdws.pubsub:";
/// Bytes waiting to be published, at most; beyond, what local clients publish is only
/// delivered locally (and counted).
pub const MAX_QUEUED: usize = 16 << 20;
/// Messages (and bytes) in one pipeline of PUBLISH commands, at most.
const BATCH: usize = 512;
const BATCH_BYTES: usize = 1 << 20;
/// How often the subscriber looks for topics to subscribe to or leave.
const POLL: Duration = Duration::from_millis(50);
/// Connect, write and answer timeout of both connections.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// A message to publish: its channel and its tagged payload.
struct Outgoing {
    channel: String,
    payload: Vec<u8>,
}

/// What the relay's threads and the two link threads share.
struct Shared {
    name: String,
    url: String,
    /// Topics with local subscribers.
    wanted: Mutex<BTreeSet<String>>,
    /// `wanted` changed since the subscriber last looked.
    changed: AtomicBool,
    queued_bytes: AtomicUsize,
    /// Messages local clients published that did not reach Redis, since start.
    not_forwarded: AtomicU64,
}

impl Shared {
    fn lose(&self, n: usize) {
        self.not_forwarded.fetch_add(n as u64, Ordering::Relaxed);
    }
}

struct RedisLink {
    shared: Arc<Shared>,
    queue: Sender<Outgoing>,
}

impl Link for RedisLink {
    fn instance(&self) -> &str {
        &self.shared.name
    }

    fn publish(&self, topic: &str, message: &PreparedMessage) {
        let body = message.payload();
        let name = self.shared.name.as_bytes();
        let size = 2 + name.len() + body.len();
        let queued = self.shared.queued_bytes.fetch_add(size, Ordering::AcqRel);
        if queued + size > MAX_QUEUED {
            self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            return self.shared.lose(1);
        }
        let mut payload = Vec::with_capacity(size);
        payload.push(if message.is_text() { b't' } else { b'b' });
        payload.push(name.len() as u8);
        payload.extend_from_slice(name);
        payload.extend_from_slice(body);
        let outgoing = Outgoing {
            channel: format!("{CHANNEL_PREFIX}{topic}"),
            payload,
        };
        if self.queue.send(outgoing).is_err() {
            // The publisher thread is gone (it only ends with the process).
            self.shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
            self.shared.lose(1);
        }
    }

    fn interest(&self, topic: &str, subscribed: bool) {
        let mut wanted = self
            .shared
            .wanted
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if subscribed {
            wanted.insert(topic.to_owned());
        } else {
            wanted.remove(topic);
        }
        self.shared.changed.store(true, Ordering::Release);
    }
}

/// The [`pubsub::Connect`](crate::pubsub::Connect) of cluster mode: checks the URL, starts the
/// publisher and subscriber threads (which connect, and reconnect, by themselves) and
/// returns at once; the relay serves its clients whether Redis is there or not.
pub fn connect(
    url: &str,
    instance: Option<&str>,
    deliver: Deliver,
) -> Result<Box<dyn Link>, String> {
    let client = Client::open(url).map_err(|e| e.to_string())?;
    let name = match instance {
        // It goes into each message (one length byte) and into a response header.
        Some(name)
            if name.is_empty()
                || name.len() > 255
                || !name.bytes().all(|b| b.is_ascii_graphic()) =>
        {
            return Err("--instance: a name of 1 to 255 visible ASCII characters".to_owned())
        }
        Some(name) => name.to_owned(),
        None => format!("{:012x}", random() >> 16),
    };
    let shared = Arc::new(Shared {
        name,
        url: url.to_owned(),
        wanted: Mutex::new(BTreeSet::new()),
        changed: AtomicBool::new(false),
        queued_bytes: AtomicUsize::new(0),
        not_forwarded: AtomicU64::new(0),
    });
    let (queue, outgoing) = mpsc::channel();
    let (s, c) = (Arc::clone(&shared), client.clone());
    thread::Builder::new()
        .name("redis-publish".to_owned())
        .spawn(move || publisher(&s, &c, &outgoing))
        .map_err(|e| e.to_string())?;
    let s = Arc::clone(&shared);
    thread::Builder::new()
        .name("redis-subscribe".to_owned())
        .spawn(move || subscriber(&s, &client, &deliver))
        .map_err(|e| e.to_string())?;
    Ok(Box::new(RedisLink { shared, queue }))
}

fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    h.write_u128(now.as_nanos());
    h.write_u32(std::process::id());
    h.finish()
}

/// Exponential backoff with jitter: the `attempt`th wait (from 0) is between half of
/// `min(BACKOFF_FIRST * 2^attempt, BACKOFF_MAX)` and all of it.
fn backoff(attempt: u32) -> Duration {
    let full = BACKOFF_FIRST
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_MAX);
    let half = full / 2;
    half + Duration::from_nanos(random() % (half.as_nanos() as u64 + 1))
}

fn open(client: &Client) -> redis::RedisResult<Connection> {
    let connection = client.get_connection_with_timeout(IO_TIMEOUT)?;
    connection.set_write_timeout(Some(IO_TIMEOUT))?;
    connection.set_read_timeout(Some(IO_TIMEOUT))?;
    Ok(connection)
}

/// Publishes what local clients publish, in order, reconnecting when Redis goes away and
/// counting what it cannot forward meanwhile. Ends when the relay drops its link.
fn publisher(shared: &Shared, client: &Client, queue: &Receiver<Outgoing>) {
    let take = |m: &Outgoing| {
        let size = m.payload.len();
        shared.queued_bytes.fetch_sub(size, Ordering::AcqRel);
    };
    let mut away: Option<(Instant, u64)> = None; // since when, and the count then
    let mut attempt = 0;
    loop {
        let mut connection = match open(client) {
            Ok(c) => c,
            Err(e) => {
                let wait = backoff(attempt);
                attempt += 1;
                let (since, before) = *away
                    .get_or_insert((Instant::now(), shared.not_forwarded.load(Ordering::Relaxed)));
                eprintln!(
                    "pubsub: redis: publisher cannot connect to {} ({e}); local delivery goes on; \
                     {} message(s) not forwarded in {:.1} s; retry in {:.1} s",
                    shared.url,
                    shared.not_forwarded.load(Ordering::Relaxed) - before,
                    since.elapsed().as_secs_f64(),
                    wait.as_secs_f64()
                );
                // Wait, but drain the queue meanwhile: what comes now cannot be forwarded.
                let until = Instant::now() + wait;
                loop {
                    let left = until.saturating_duration_since(Instant::now());
                    match queue.recv_timeout(left) {
                        Ok(m) => {
                            take(&m);
                            shared.lose(1);
                        }
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => return,
                    }
                }
                continue;
            }
        };
        attempt = 0;
        match away.take() {
            Some((since, before)) => {
                let total = shared.not_forwarded.load(Ordering::Relaxed);
                eprintln!(
                    "pubsub: redis: publisher connected to {} after {:.1} s away; {} message(s) \
                     not forwarded meanwhile (delivered locally only), {total} since start",
                    shared.url,
                    since.elapsed().as_secs_f64(),
                    total - before
                );
            }
            None => eprintln!("pubsub: redis: publisher connected to {}", shared.url),
        }
        let mut batch: Vec<Outgoing> = Vec::with_capacity(BATCH);
        'connected: loop {
            let Ok(first) = queue.recv() else { return };
            let mut bytes = first.payload.len();
            batch.push(first);
            while batch.len() < BATCH && bytes < BATCH_BYTES {
                match queue.try_recv() {
                    Ok(m) => {
                        bytes += m.payload.len();
                        batch.push(m);
                    }
                    Err(_) => break,
                }
            }
            let mut pipe = redis::pipe();
            for m in &batch {
                pipe.cmd("PUBLISH").arg(&m.channel).arg(&m.payload).ignore();
            }
            let sent = pipe.exec(&mut connection);
            for m in batch.drain(..) {
                take(&m);
            }
            if let Err(e) = sent {
                let n = pipe.len();
                shared.lose(n);
                away = Some((
                    Instant::now(),
                    shared.not_forwarded.load(Ordering::Relaxed) - n as u64,
                ));
                eprintln!(
                    "pubsub: redis: publish failed ({e}); local delivery goes on; {n} message(s) \
                     of the failed batch counted as not forwarded; reconnecting"
                );
                break 'connected;
            }
        }
    }
}

/// Keeps this instance subscribed to the channel of every topic with local subscribers and
/// delivers what comes from the other instances.
fn subscriber(shared: &Shared, client: &Client, deliver: &Deliver) {
    let mut away: Option<Instant> = None;
    let mut attempt = 0;
    loop {
        let error = match open(client) {
            Ok(mut connection) => {
                attempt = 0;
                match away.take() {
                    Some(since) => eprintln!(
                        "pubsub: redis: subscriber connected to {} after {:.1} s away \
                         (what other instances published meanwhile did not reach this one)",
                        shared.url,
                        since.elapsed().as_secs_f64()
                    ),
                    None => eprintln!("pubsub: redis: subscriber connected to {}", shared.url),
                }
                listen(shared, &mut connection, deliver)
            }
            Err(e) => e,
        };
        away.get_or_insert_with(Instant::now);
        let wait = backoff(attempt);
        attempt += 1;
        eprintln!(
            "pubsub: redis: subscriber: {error}; local delivery goes on; retry in {:.1} s",
            wait.as_secs_f64()
        );
        thread::sleep(wait);
    }
}

/// One subscribe connection, until it fails.
fn listen(shared: &Shared, connection: &mut Connection, deliver: &Deliver) -> redis::RedisError {
    let mut pubsub = connection.as_pubsub();
    let mut subscribed: BTreeSet<String> = BTreeSet::new();
    let mut first = true;
    loop {
        if shared.changed.swap(false, Ordering::AcqRel) || first {
            let wanted = shared
                .wanted
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clone();
            let join: Vec<String> = wanted.difference(&subscribed).map(|t| channel(t)).collect();
            let leave: Vec<String> = subscribed.difference(&wanted).map(|t| channel(t)).collect();
            // The answers may take longer than a poll.
            if let Err(e) = pubsub.set_read_timeout(Some(IO_TIMEOUT)) {
                return e;
            }
            if !join.is_empty() {
                if let Err(e) = pubsub.subscribe(&join) {
                    return e;
                }
            }
            if !leave.is_empty() {
                if let Err(e) = pubsub.unsubscribe(&leave) {
                    return e;
                }
            }
            if first && !join.is_empty() {
                eprintln!("pubsub: redis: subscribed to {} topic(s)", join.len());
            }
            subscribed = wanted;
            first = false;
            if let Err(e) = pubsub.set_read_timeout(Some(POLL)) {
                return e;
            }
        }
        match pubsub.get_message() {
            Ok(message) => receive(shared, &message, deliver),
            Err(e) if e.is_timeout() => {}
            Err(e) => return e,
        }
    }
}

fn channel(topic: &str) -> String {
    format!("{CHANNEL_PREFIX}{topic}")
}

/// A message from Redis: to the local subscribers, unless it is this instance's own.
fn receive(shared: &Shared, message: &Msg, deliver: &Deliver) {
    let Some(topic) = message.get_channel_name().strip_prefix(CHANNEL_PREFIX) else {
        return;
    };
    let bytes = message.get_payload_bytes();
    let (Some(&kind), Some(&len)) = (bytes.first(), bytes.get(1)) else {
        return eprintln!("pubsub: redis: a malformed message on {topic} skipped");
    };
    let Some(name) = bytes.get(2..2 + len as usize) else {
        return eprintln!("pubsub: redis: a malformed message on {topic} skipped");
    };
    if name == shared.name.as_bytes() {
        return; // published here, and delivered here already
    }
    let body = &bytes[2 + len as usize..];
    let prepared = match kind {
        b't' => match std::str::from_utf8(body) {
            Ok(text) => PreparedMessage::text(text),
            Err(_) => {
                return eprintln!(
                    "pubsub: redis: a text message on {topic} that is not UTF-8 skipped"
                )
            }
        },
        b'b' => PreparedMessage::binary(body),
        _ => return eprintln!("pubsub: redis: a message of unknown kind on {topic} skipped"),
    };
    deliver(topic, &prepared);
}
