//! Graceful shutdown of a thread-per-connection server: [`GracefulShutdown`] stops a
//! [`Server`](crate::Server)'s accept loop, sends close 1001 to every connection it tracks,
//! waits for them to end up to a deadline, and cuts the rest ([`ShutdownReport`]).

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::close::CloseCode;
use crate::socket::Socket;
use crate::split::WriteHalf;

/// How long the close frame of a shutdown may wait for room in a socket buffer.
const CLOSE_WRITE_WAIT: Duration = Duration::from_millis(100);

/// How often a close that found the connection's writer busy is tried again.
const RETRY: Duration = Duration::from_millis(5);

/// The close reason of a shutdown.
const REASON: &str = "server shutting down";

/// A tracked connection, as the shutdown sees it.
trait Closer: Send + Sync {
    /// Sends close 1001 without waiting on a writer that holds the connection's lock;
    /// `false` when one did (nothing sent yet).
    fn going_away(&self, reason: &str) -> bool;
    /// Shuts the socket down.
    fn cut(&self);
}

impl<W: Write + Socket + Send + 'static> Closer for WriteHalf<W> {
    fn going_away(&self, reason: &str) -> bool {
        self.close_nowait(CloseCode::GOING_AWAY, reason, CLOSE_WRITE_WAIT)
    }
    fn cut(&self) {
        let _ = self.shutdown();
    }
}

#[derive(Default)]
struct Live {
    connections: HashMap<u64, Arc<dyn Closer>>,
    /// Where the servers that stop with this shutdown listen (to wake their accept).
    listeners: Vec<SocketAddr>,
}

struct Inner {
    started: AtomicBool,
    next_id: AtomicU64,
    live: Mutex<Live>,
    /// Signalled when a tracked connection ends.
    ended: Condvar,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What [`GracefulShutdown::run`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ShutdownReport {
    /// Connections that were live when the shutdown started.
    pub live: usize,
    /// Of them, those that ended within the grace period (closing handshake done, or ended
    /// otherwise).
    pub closed: usize,
    /// Of them, those still open at the deadline, whose sockets were shut down.
    pub cut: usize,
}

/// Graceful shutdown for a thread-per-connection server: cheap to clone, one per server.
///
/// Give it to the [`Server`](crate::Server) ([`Server::shutdown_on`](crate::Server::shutdown_on)),
/// whose accept loop then ends when the shutdown starts, and [`track`](Self::track) each
/// connection's [`WriteHalf`] while its thread serves it. [`run`](Self::run) (from any
/// thread: a signal watcher, a console command) stops accepting, sends close 1001 to every
/// tracked connection, waits up to the grace period for their threads to drop the
/// [`Tracked`] guards (after the closing handshake, `read` returns `ConnectionClosed`), cuts
/// the ones left, and reports.
///
/// ```no_run
/// use std::time::Duration;
/// use stdws::{GracefulShutdown, Server};
///
/// # fn demo() -> std::io::Result<()> {
/// let shutdown = GracefulShutdown::new();
/// let server = Server::bind("127.0.0.1:9001")?.shutdown_on(&shutdown);
/// let stopper = shutdown.clone();
/// std::thread::spawn(move || {
///     std::thread::sleep(Duration::from_secs(60)); // or wait for a signal, a command...
///     let report = stopper.run(Duration::from_secs(5));
///     eprintln!("{} closed, {} cut", report.closed, report.cut);
/// });
/// for pending in server.incoming() {
///     let Ok(pending) = pending else { continue };
///     let shutdown = shutdown.clone();
///     std::thread::spawn(move || -> stdws::Result<()> {
///         let (mut reader, writer) = pending.accept()?.split()?;
///         let _tracked = shutdown.track(&writer);
///         while let Ok(message) = reader.read() {
///             if message.is_data() {
///                 writer.send(message)?;
///             }
///         }
///         Ok(())
///     });
/// }
/// // Here the shutdown has started: `incoming` ended.
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct GracefulShutdown {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for GracefulShutdown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GracefulShutdown")
            .field("started", &self.is_started())
            .field("live", &lock(&self.inner.live).connections.len())
            .finish()
    }
}

impl Default for GracefulShutdown {
    fn default() -> Self {
        GracefulShutdown::new()
    }
}

impl GracefulShutdown {
    /// A shutdown not yet started.
    pub fn new() -> GracefulShutdown {
        GracefulShutdown {
            inner: Arc::new(Inner {
                started: AtomicBool::new(false),
                next_id: AtomicU64::new(0),
                live: Mutex::new(Live::default()),
                ended: Condvar::new(),
            }),
        }
    }

    /// Whether it has started (a server that stops with it accepts no more).
    pub fn is_started(&self) -> bool {
        self.inner.started.load(Ordering::Acquire)
    }

    /// Tracks a connection until the returned guard is dropped (when its thread is done
    /// with it). A connection tracked after the shutdown started is sent its 1001 at once.
    pub fn track<W: Write + Socket + Send + 'static>(&self, writer: &WriteHalf<W>) -> Tracked {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let closer: Arc<dyn Closer> = Arc::new(writer.clone());
        let late = {
            let mut live = lock(&self.inner.live);
            // Checked under the lock that `run` takes after setting the flag: either `run`
            // sees this connection, or this sees the flag.
            let started = self.is_started();
            if !started {
                live.connections.insert(id, closer);
                None
            } else {
                Some(closer)
            }
        };
        if let Some(closer) = late {
            // A writer of this brand-new connection may hold its lock for a moment.
            let until = Instant::now() + CLOSE_WRITE_WAIT;
            while !closer.going_away(REASON) && Instant::now() < until {
                std::thread::sleep(RETRY);
            }
            closer.cut();
        }
        Tracked {
            inner: Arc::clone(&self.inner),
            id,
        }
    }

    /// Stops accepting: servers that stop with this shutdown end their accept loops
    /// (their blocking `accept` is woken). Connections are left alone; see
    /// [`run`](Self::run).
    pub fn begin(&self) {
        let listeners = {
            let live = lock(&self.inner.live);
            if self.inner.started.swap(true, Ordering::AcqRel) {
                return;
            }
            live.listeners.clone()
        };
        for addr in listeners {
            // A connection wakes a thread blocked in `accept`, which sees the flag.
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
    }

    /// The whole graceful shutdown: [`begin`](Self::begin), close 1001 ("server shutting
    /// down") to every tracked connection, a wait of up to `grace` for them to end, then
    /// their sockets shut down. Returns how many there were, ended, and were cut. A close
    /// frame is never waited for past the deadline: one that finds a writer holding the
    /// connection is tried again every 5 ms, and one that finds the socket buffer full
    /// waits at most 100 ms for room (the peer stopped reading); a connection whose close
    /// could not be sent is cut at the deadline, like one that did not answer it.
    pub fn run(&self, grace: Duration) -> ShutdownReport {
        self.begin();
        let deadline = Instant::now() + grace;
        let ids: Vec<u64> = lock(&self.inner.live).connections.keys().copied().collect();
        // Connections whose close is still to be sent: a writer held the lock (it is
        // usually released within microseconds), tried again until the deadline.
        let mut unsent = ids.clone();
        let live = loop {
            unsent.retain(|id| {
                // Past the deadline (closes that each waited for room in a full socket
                // buffer), the rest are cut without one.
                if Instant::now() >= deadline {
                    return true;
                }
                // Each close without holding the lock, so connections can end meanwhile.
                let closer = lock(&self.inner.live).connections.get(id).cloned();
                closer.is_some_and(|closer| !closer.going_away(REASON))
            });
            let live = lock(&self.inner.live);
            let left = ids
                .iter()
                .filter(|id| live.connections.contains_key(id))
                .count();
            let now = Instant::now();
            if left == 0 || now >= deadline {
                break live;
            }
            let wait = match unsent.is_empty() {
                true => deadline - now,
                false => RETRY.min(deadline - now),
            };
            drop(
                self.inner
                    .ended
                    .wait_timeout(live, wait)
                    .unwrap_or_else(PoisonError::into_inner),
            );
        };
        let mut cut = 0;
        for id in &ids {
            if let Some(closer) = live.connections.get(id) {
                closer.cut();
                cut += 1;
            }
        }
        ShutdownReport {
            live: ids.len(),
            closed: ids.len() - cut,
            cut,
        }
    }

    /// Connections tracked now.
    pub fn live(&self) -> usize {
        lock(&self.inner.live).connections.len()
    }

    /// A server listening on `addr` stops with this shutdown.
    pub(crate) fn add_listener(&self, addr: SocketAddr) {
        let mut addr = addr;
        if addr.ip().is_unspecified() {
            // Listening on 0.0.0.0 or [::]: wake it over loopback.
            addr.set_ip(match addr {
                SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
                SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
            });
        }
        lock(&self.inner.live).listeners.push(addr);
    }
}

/// A connection tracked by a [`GracefulShutdown`] until this is dropped.
#[must_use = "the connection is tracked until this guard is dropped"]
pub struct Tracked {
    inner: Arc<Inner>,
    id: u64,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let closer = lock(&self.inner.live).connections.remove(&self.id);
        drop(closer);
        self.inner.ended.notify_all();
    }
}

impl std::fmt::Debug for Tracked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracked").field("id", &self.id).finish()
    }
}
