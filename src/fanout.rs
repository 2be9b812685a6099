//! Broadcast to many connections without waiting on a slow one: [`Fanout`] (a small pool of
//! writer threads), [`Topic`] (a set of subscribers), [`Subscription`].
//!
//! A broadcast frames the message once ([`PreparedMessage`]) and appends a reference to it to
//! each subscriber's mailbox; it never touches a socket, so it takes about the same time
//! whatever the subscribers do. The pool's threads move each mailbox into its connection's
//! queue under the connection's write lock and write out what the socket takes, many
//! messages in one write when they have piled up. Subscribers go to the writers in the order
//! they subscribed, 128 at a time while the broadcast still fills the later mailboxes.
//!
//! Sockets of subscribers get a write timeout of [`FanoutConfig::write_wait`]: a write to a
//! socket whose buffer is full returns after that long with the rest still queued, and the
//! subscriber is tried again a little later ([`FanoutConfig::retry`]). Order per subscriber
//! is kept (one queue, written in order), and nothing is sent twice.
//!
//! Each subscriber has a budget: bytes in its mailbox plus bytes queued in its connection
//! (on top of what the kernel's socket buffer holds), counted once its socket has refused
//! bytes (it is full now). Until then what waits is a writer thread's lag, not the
//! subscriber's: a burst may queue up to [`FanoutConfig::burst_factor`] times the budget for it. A
//! broadcast that would take a subscriber over the limit, or a subscriber whose socket has
//! taken nothing for [`FanoutConfig::max_stall`], is cut: a close frame 1008 is queued (it reaches the client
//! only if it reads again), the connection ends, and its socket is shut down, which wakes
//! its reading half. The broadcast reports it ([`Delivery::dropped`]), and so does its
//! [`Subscription`].

use std::collections::{BTreeMap, VecDeque};
use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

use crate::close::{CloseCode, CloseFrame};
use crate::error::Result;
use crate::prepared::PreparedMessage;
use crate::socket::{SharedTcpStream, Socket};
use crate::split::{Drained, WriteHalf};

/// Settings of a [`Fanout`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct FanoutConfig {
    /// Bytes a subscriber whose socket is full may have waiting in the library (its mailbox
    /// and its connection's queue, not the kernel's socket buffer) before it is cut.
    /// Default 1 MiB. A subscriber whose socket took everything it was given is not slow:
    /// what waits for it is a burst the writer threads have not reached yet, allowed up to
    /// [`burst_factor`](Self::burst_factor) times this. One message larger than the limit is still queued for
    /// a subscriber with nothing waiting.
    pub budget: usize,
    /// How many budgets of backlog a subscriber whose socket has refused nothing may have
    /// waiting for a writer thread (a burst broadcast faster than the writers write)
    /// before it is cut anyway: the bound on memory when the writers cannot keep up at
    /// all. Default 16 (at least 1).
    pub burst_factor: usize,
    /// How long a subscriber may go without its socket taking any byte while it has some
    /// waiting, before it is cut. Default 5 s.
    pub max_stall: Duration,
    /// Writer threads. Default: the number of CPUs (at least 1, at most 4).
    pub writers: usize,
    /// The write timeout given to subscribers' sockets: the longest a writer thread waits
    /// on a full socket buffer before it goes on with the others. Default 1 ms (the kernel
    /// rounds it up to one clock tick, 1-10 ms).
    pub write_wait: Duration,
    /// How soon a subscriber whose socket was full is tried again. Default 20 ms.
    pub retry: Duration,
    /// Stack size of the writer threads. Default 64 KiB.
    pub stack_size: usize,
}

impl Default for FanoutConfig {
    fn default() -> Self {
        FanoutConfig {
            budget: 1 << 20,
            burst_factor: 16,
            max_stall: Duration::from_secs(5),
            writers: thread::available_parallelism().map_or(1, |n| n.get().clamp(1, 4)),
            write_wait: Duration::from_millis(1),
            retry: Duration::from_millis(20),
            stack_size: 64 << 10,
        }
    }
}

impl FanoutConfig {
    /// Sets [`budget`](Self::budget).
    pub fn budget(mut self, bytes: usize) -> Self {
        self.budget = bytes;
        self
    }
    /// Sets [`burst_factor`](Self::burst_factor) (at least 1).
    pub fn burst_factor(mut self, factor: usize) -> Self {
        self.burst_factor = factor.max(1);
        self
    }
    /// Sets [`max_stall`](Self::max_stall).
    pub fn max_stall(mut self, stall: Duration) -> Self {
        self.max_stall = stall;
        self
    }
    /// Sets [`writers`](Self::writers) (at least 1).
    pub fn writers(mut self, n: usize) -> Self {
        self.writers = n.max(1);
        self
    }
}

/// Why a subscriber was cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Cut {
    /// A broadcast would have taken it over [`FanoutConfig::budget`] (its socket full), or
    /// over [`FanoutConfig::burst_factor`] budgets.
    OverBudget,
    /// Its socket took nothing for [`FanoutConfig::max_stall`].
    Stalled,
}

/// What a [`Topic::broadcast`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Delivery {
    /// Subscribers the message was queued for.
    pub queued: usize,
    /// Subscribers cut by this broadcast (over their budget), by [`Subscription::id`].
    pub dropped: Vec<u64>,
}

/// Subscribers a broadcast hands to the writer threads at a time.
const SCHEDULE_CHUNK: usize = 128;

const LIVE: u8 = 0;
const OVER_BUDGET: u8 = 1;
const STALLED: u8 = 2;
/// The connection ended by itself (closed, failed): not a cut.
const GONE: u8 = 3;

/// One subscriber: its connection and its mailbox.
struct Sub<W> {
    id: u64,
    half: WriteHalf<W>,
    mailbox: Mutex<Mailbox>,
    /// Bytes left in the connection's queue after the last write (part of the budget).
    queued: AtomicUsize,
    /// In the pool's ready queue or retry list (at most once).
    scheduled: AtomicBool,
    /// `LIVE`, or why it was cut.
    fate: AtomicU8,
}

#[derive(Default)]
struct Mailbox {
    messages: Vec<PreparedMessage>,
    bytes: usize,
    /// When the socket last refused bytes with some still waiting (`None`: it took all).
    stalled_since: Option<Instant>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<W: Write + Socket> Sub<W> {
    /// Cuts it (once): close 1008, end, shut the socket down.
    fn cut(&self, why: u8) -> bool {
        if self
            .fate
            .compare_exchange(LIVE, why, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return false;
        }
        lock(&self.mailbox).messages.clear();
        let reason = match why {
            OVER_BUDGET => "subscriber too slow: over its send budget",
            _ => "subscriber too slow: stalled",
        };
        self.half.cut(&CloseFrame::new(
            CloseCode::POLICY_VIOLATION,
            reason.to_owned(),
        ));
        true
    }
}

/// The writer threads' work: subscribers with something to write, now or later.
struct Work<W> {
    ready: VecDeque<Arc<Sub<W>>>,
    retry: VecDeque<(Instant, Arc<Sub<W>>)>,
    stop: bool,
}

struct Pool<W> {
    config: FanoutConfig,
    work: Mutex<Work<W>>,
    wake: Condvar,
}

impl<W: Write + Socket + Send + 'static> Pool<W> {
    fn schedule(&self, subs: impl IntoIterator<Item = Arc<Sub<W>>>) {
        let mut work = lock(&self.work);
        let before = work.ready.len();
        work.ready.extend(subs);
        let added = work.ready.len() - before;
        drop(work);
        match added {
            0 => {}
            1 => self.wake.notify_one(),
            _ => self.wake.notify_all(),
        }
    }

    /// A writer thread: takes subscribers off the ready queue (and due retries) in small
    /// batches and writes each out.
    fn run(&self) {
        let mut batch = Vec::with_capacity(64);
        loop {
            {
                let mut work = lock(&self.work);
                loop {
                    if work.stop {
                        return;
                    }
                    let now = Instant::now();
                    while work.retry.front().is_some_and(|(at, _)| *at <= now) {
                        let (_, sub) = work.retry.pop_front().expect("checked");
                        work.ready.push_back(sub);
                    }
                    if !work.ready.is_empty() {
                        let n = work.ready.len().min(64);
                        batch.extend(work.ready.drain(..n));
                        break;
                    }
                    work = match work.retry.front() {
                        Some((at, _)) => {
                            let wait = at.saturating_duration_since(now);
                            self.wake
                                .wait_timeout(work, wait)
                                .unwrap_or_else(PoisonError::into_inner)
                                .0
                        }
                        None => self.wake.wait(work).unwrap_or_else(PoisonError::into_inner),
                    };
                }
            }
            for sub in batch.drain(..) {
                self.write(sub);
            }
        }
    }

    /// Writes out one subscriber's mailbox.
    fn write(&self, sub: Arc<Sub<W>>) {
        // Cleared first: a broadcast from now on schedules it again.
        sub.scheduled.store(false, Ordering::Release);
        if sub.fate.load(Ordering::Acquire) != LIVE {
            return;
        }
        let drained = sub.half.drain_prepared(|| {
            let mut mailbox = lock(&sub.mailbox);
            mailbox.bytes = 0;
            std::mem::take(&mut mailbox.messages)
        });
        match drained {
            Ok(Drained::Flushed) => {
                sub.queued.store(0, Ordering::Release);
                lock(&sub.mailbox).stalled_since = None;
            }
            Ok(Drained::Blocked(left)) => {
                let now = Instant::now();
                let before = sub.queued.swap(left, Ordering::AcqRel);
                let since = {
                    let mut mailbox = lock(&sub.mailbox);
                    if left < before {
                        // Some bytes went: the clock of the stall starts again.
                        mailbox.stalled_since = Some(now);
                    }
                    *mailbox.stalled_since.get_or_insert(now)
                };
                if now.duration_since(since) >= self.config.max_stall {
                    sub.cut(STALLED);
                    return;
                }
                self.later(sub, now);
            }
            Ok(Drained::Busy) => self.later(sub, Instant::now()),
            Err(_) => {
                let _ = sub
                    .fate
                    .compare_exchange(LIVE, GONE, Ordering::AcqRel, Ordering::Acquire);
                lock(&sub.mailbox).messages.clear();
            }
        }
    }

    fn later(&self, sub: Arc<Sub<W>>, now: Instant) {
        if sub.scheduled.swap(true, Ordering::AcqRel) {
            return; // a broadcast scheduled it meanwhile
        }
        lock(&self.work)
            .retry
            .push_back((now + self.config.retry, sub));
        self.wake.notify_one();
    }
}

/// Stops the writer threads when the last [`Fanout`] handle (topics and subscriptions
/// hold one) is gone.
struct Owner<W> {
    pool: Arc<Pool<W>>,
}

impl<W> Drop for Owner<W> {
    fn drop(&mut self) {
        lock(&self.pool.work).stop = true;
        self.pool.wake.notify_all();
    }
}

/// Broadcast without waiting on slow subscribers: a small pool of writer threads that
/// write [`Topic`]s' messages out to their subscribers' connections (see the module docs
/// of `fanout.rs` in the README's layout, and "Slow clients must not stall the others" in
/// the README).
///
/// Cheap to clone; the threads stop when the last clone, [`Topic`] and [`Subscription`]
/// are gone.
///
/// ```no_run
/// use stdws::{Fanout, FanoutConfig, PreparedMessage};
///
/// # fn demo(listener: std::net::TcpListener) -> stdws::Result<()> {
/// let fanout = Fanout::new(FanoutConfig::default().budget(256 << 10))?;
/// let news = fanout.topic();
/// for stream in listener.incoming() {
///     let (mut reader, writer) = stdws::accept(stream?)?.split()?;
///     let subscription = news.subscribe(writer)?;
///     let news = news.clone();
///     std::thread::spawn(move || {
///         // Reading answers pings and closes; what a client sends goes to everyone.
///         while let Ok(message) = reader.read() {
///             if let Some(prepared) = PreparedMessage::from_message(&message) {
///                 news.broadcast(&prepared);
///             }
///         }
///         drop(subscription); // unsubscribes
///     });
/// }
/// # Ok(()) }
/// ```
pub struct Fanout<W = SharedTcpStream> {
    owner: Arc<Owner<W>>,
    next_id: Arc<AtomicU64>,
}

impl<W> Clone for Fanout<W> {
    fn clone(&self) -> Self {
        Fanout {
            owner: Arc::clone(&self.owner),
            next_id: Arc::clone(&self.next_id),
        }
    }
}

impl<W> std::fmt::Debug for Fanout<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("config", &self.owner.pool.config)
            .finish_non_exhaustive()
    }
}

impl<W: Write + Socket + Send + 'static> Fanout<W> {
    /// Starts the writer threads.
    pub fn new(config: FanoutConfig) -> Result<Self> {
        let writers = config.writers.max(1);
        let stack_size = config.stack_size.max(16 << 10);
        let pool = Arc::new(Pool {
            config,
            work: Mutex::new(Work {
                ready: VecDeque::new(),
                retry: VecDeque::new(),
                stop: false,
            }),
            wake: Condvar::new(),
        });
        for i in 0..writers {
            let pool = Arc::clone(&pool);
            thread::Builder::new()
                .name(format!("stdws-fanout-{i}"))
                .stack_size(stack_size)
                .spawn(move || pool.run())?;
        }
        Ok(Fanout {
            owner: Arc::new(Owner { pool }),
            next_id: Arc::new(AtomicU64::new(1)),
        })
    }

    /// A new, empty topic served by this pool.
    pub fn topic(&self) -> Topic<W> {
        Topic {
            fanout: self.clone(),
            subs: Arc::new(Mutex::new(Members::default())),
        }
    }

    fn config(&self) -> &FanoutConfig {
        &self.owner.pool.config
    }
}

/// A topic's subscribers: the set, changed in O(log N) by subscribe and unsubscribe, and
/// the list a broadcast walks, made from the set when a broadcast finds it changed (so a
/// burst of N subscribes costs O(N log N), not the O(N^2) of copying the list at each one).
/// The set is ordered by id, so a broadcast hands subscribers to the writers in the order
/// they subscribed: connections accepted one after the other have their kernel socket state
/// allocated one after the other, and writing them in that order rather than in a hash
/// map's order made the last delivery at 10,000 subscribers 6-12 % sooner (benches/README).
struct Members<W> {
    all: BTreeMap<u64, Arc<Sub<W>>>,
    snapshot: Option<Arc<Vec<Arc<Sub<W>>>>>,
}

impl<W> Default for Members<W> {
    fn default() -> Self {
        Members {
            all: BTreeMap::new(),
            snapshot: None,
        }
    }
}

impl<W> Members<W> {
    /// The list to broadcast to, made again if the set changed since the last one.
    fn snapshot(&mut self) -> Arc<Vec<Arc<Sub<W>>>> {
        let all = &self.all;
        Arc::clone(
            self.snapshot
                .get_or_insert_with(|| Arc::new(all.values().cloned().collect())),
        )
    }
}

/// A set of subscribers that [`broadcast`](Self::broadcast) sends to (see [`Fanout`]).
/// Cheap to clone: clones are the same topic.
pub struct Topic<W = SharedTcpStream> {
    fanout: Fanout<W>,
    /// A broadcast walks a snapshot of them without holding the lock.
    subs: Arc<Mutex<Members<W>>>,
}

impl<W> Clone for Topic<W> {
    fn clone(&self) -> Self {
        Topic {
            fanout: self.fanout.clone(),
            subs: Arc::clone(&self.subs),
        }
    }
}

impl<W> std::fmt::Debug for Topic<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topic")
            .field("subscribers", &lock(&self.subs).all.len())
            .finish_non_exhaustive()
    }
}

impl<W: Write + Socket + Send + 'static> Topic<W> {
    /// Adds a connection's writing half. Its socket's write timeout becomes
    /// [`FanoutConfig::write_wait`] (other sends through it see `WouldBlock` on a full
    /// socket buffer, with the message queued). Dropping the [`Subscription`] removes it.
    pub fn subscribe(&self, writer: WriteHalf<W>) -> Result<Subscription<W>> {
        writer.set_write_timeout(Some(self.fanout.config().write_wait))?;
        let sub = Arc::new(Sub {
            id: self.fanout.next_id.fetch_add(1, Ordering::Relaxed),
            half: writer,
            mailbox: Mutex::new(Mailbox::default()),
            queued: AtomicUsize::new(0),
            scheduled: AtomicBool::new(false),
            fate: AtomicU8::new(LIVE),
        });
        {
            let mut subs = lock(&self.subs);
            subs.all.insert(sub.id, Arc::clone(&sub));
            subs.snapshot = None;
        }
        Ok(Subscription {
            topic: self.clone(),
            sub,
        })
    }

    /// Queues `message` for every live subscriber and returns at once; the writer threads
    /// send it. Subscribers it would take over their budget are cut (see [`Fanout`]).
    pub fn broadcast(&self, message: &PreparedMessage) -> Delivery {
        let subs = lock(&self.subs).snapshot();
        let len = message.server_frame().len();
        let budget = self.fanout.config().budget;
        let burst_factor = self.fanout.config().burst_factor.max(1);
        let mut delivery = Delivery::default();
        let mut wake = Vec::with_capacity(SCHEDULE_CHUNK.min(subs.len()));
        for sub in subs.iter() {
            if sub.fate.load(Ordering::Acquire) != LIVE {
                continue;
            }
            let over = {
                let mut mailbox = lock(&sub.mailbox);
                let waiting = mailbox.bytes + sub.queued.load(Ordering::Acquire);
                // The budget counts once the socket is full; before, the backlog is the
                // writers' lag and has the burst limit.
                let limit = match mailbox.stalled_since {
                    Some(_) => budget,
                    None => budget.saturating_mul(burst_factor),
                };
                // A message larger than the limit still goes to a subscriber with nothing
                // waiting: the limit bounds a backlog, not one message.
                if waiting > 0 && waiting + len > limit {
                    true
                } else {
                    mailbox.messages.push(message.clone());
                    mailbox.bytes += len;
                    false
                }
            };
            if over {
                if sub.cut(OVER_BUDGET) {
                    delivery.dropped.push(sub.id);
                }
                continue;
            }
            delivery.queued += 1;
            if !sub.scheduled.swap(true, Ordering::AcqRel) {
                wake.push(Arc::clone(sub));
                // The writers start on the first subscribers while the rest are queued.
                if wake.len() == SCHEDULE_CHUNK {
                    self.fanout.owner.pool.schedule(wake.drain(..));
                }
            }
        }
        self.fanout.owner.pool.schedule(wake);
        delivery
    }

    /// Subscribers now (cut ones count until their [`Subscription`] is dropped).
    pub fn len(&self) -> usize {
        lock(&self.subs).all.len()
    }

    /// Whether it has no subscriber.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn remove(&self, id: u64) {
        let removed = {
            let mut subs = lock(&self.subs);
            subs.snapshot = None;
            subs.all.remove(&id)
        };
        // Its last reference may go here, outside the lock.
        drop(removed);
    }
}

/// One connection's membership of a [`Topic`]; dropping it unsubscribes.
pub struct Subscription<W = SharedTcpStream>
where
    W: Write + Socket + Send + 'static,
{
    topic: Topic<W>,
    sub: Arc<Sub<W>>,
}

impl<W: Write + Socket + Send + 'static> Subscription<W> {
    /// Its number, as in [`Delivery::dropped`].
    pub fn id(&self) -> u64 {
        self.sub.id
    }

    /// Why it was cut, if it was.
    pub fn cut(&self) -> Option<Cut> {
        match self.sub.fate.load(Ordering::Acquire) {
            OVER_BUDGET => Some(Cut::OverBudget),
            STALLED => Some(Cut::Stalled),
            _ => None,
        }
    }

    /// The subscriber's writing half.
    pub fn writer(&self) -> &WriteHalf<W> {
        &self.sub.half
    }
}

impl<W: Write + Socket + Send + 'static> std::fmt::Debug for Subscription<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.sub.id)
            .field("cut", &self.cut())
            .finish()
    }
}

impl<W: Write + Socket + Send + 'static> Drop for Subscription<W> {
    fn drop(&mut self) {
        self.topic.remove(self.sub.id);
    }
}
