//! A client that stays connected: [`ClientBuilder::reconnecting`] gives an iterator of
//! connections, each one made when the caller asks for the next, with exponential backoff
//! and full jitter between failed attempts.
//!
//! The loop shape is Python websockets' `for ws in connect(uri)`: the body of the loop runs
//! once per connection, so it subscribes (or logs in, or resends state) after every
//! connect, reads until the connection ends, and the next iteration reconnects.
//!
//! What is retried is [`retry_policy`]: network failures, timeouts, DNS failures, 5xx, and
//! 429 (after its `Retry-After`). Everything else, among them 401, 403, 404 and the other
//! 4xx, a bad URL or a TLS certificate failure, ends the iteration with that error.

use std::fmt;
use std::io::ErrorKind;
use std::net::TcpStream;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, HandshakeError};
use crate::handshake::client::ClientBuilder;
use crate::handshake::Response;
use crate::rand::Rng;
use crate::websocket::WebSocket;

/// Exponential backoff with full jitter: after the `n`-th failure in a row (from 0) the
/// client waits a random time between zero and `min(max, initial * factor^n)`.
///
/// Full jitter spreads the clients of a server that restarted over the whole window
/// instead of bringing them back in waves. Default: 1 s initial, 60 s maximum, factor 2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            initial: Duration::from_secs(1),
            max: Duration::from_secs(60),
            factor: 2.0,
        }
    }
}

impl Backoff {
    /// A backoff whose window starts at `initial`, grows by `factor` (at least 1; NaN is
    /// taken as 1) after each failure and never exceeds `max` (at least `initial`).
    pub fn new(initial: Duration, max: Duration, factor: f64) -> Self {
        Backoff {
            initial,
            max: max.max(initial),
            factor: if factor >= 1.0 { factor } else { 1.0 },
        }
    }

    /// The first window.
    pub fn initial(&self) -> Duration {
        self.initial
    }

    /// The largest window, and the longest any wait lasts (a `Retry-After` included).
    pub fn max(&self) -> Duration {
        self.max
    }

    /// The growth factor.
    pub fn factor(&self) -> f64 {
        self.factor
    }

    /// The window after `failures` failures in a row: `min(max, initial * factor^failures)`.
    pub fn window(&self, failures: u32) -> Duration {
        let secs = self.initial.as_secs_f64() * self.factor.powi(failures.min(1000) as i32);
        if secs.is_finite() && secs < self.max.as_secs_f64() {
            Duration::from_secs_f64(secs)
        } else {
            self.max
        }
    }

    /// A delay drawn uniformly from `[0, window(failures)]`, with `unit` a number in
    /// `[0, 1)`.
    fn jittered(&self, failures: u32, unit: f64) -> Duration {
        self.window(failures).mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// What [`retry_policy`] says of a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Retry {
    /// Not worth retrying: give the error to the caller.
    No,
    /// Retry after the backoff's delay.
    Backoff,
    /// Retry after this long (the server's `Retry-After`).
    After(Duration),
}

/// Whether a failed connection attempt is worth retrying, and when:
///
/// - [`Retry::Backoff`]: I/O errors (refused, reset, unreachable, timed out), a handshake
///   that timed out or that the server cut off, name resolution failures, a 5xx answer
///   without `Retry-After`, a proxy that could not reach the server
///   ([`ProxyError::is_transient`](crate::ProxyError::is_transient));
/// - [`Retry::After`]: a 429 or 5xx answer with `Retry-After` (seconds, or an HTTP date;
///   a 429 without one: [`Retry::Backoff`]);
/// - [`Retry::No`]: anything else, e.g. 401, 403, 404 and the other 4xx and 3xx answers,
///   an invalid URL or header, a redirect not followed, a TLS certificate failure, a
///   response that breaks RFC 6455, a proxy that refused the client (407, 403, SOCKS5
///   rules or credentials).
pub fn retry_policy(error: &Error) -> Retry {
    match error {
        Error::Io(e) => match e.kind() {
            ErrorKind::InvalidInput | ErrorKind::PermissionDenied | ErrorKind::Unsupported => {
                Retry::No
            }
            _ => Retry::Backoff,
        },
        Error::Resolve(_) => Retry::Backoff,
        Error::Proxy(e) if e.is_transient() => Retry::Backoff,
        Error::Url(crate::url::UrlError::NoAddress) => Retry::Backoff,
        Error::Handshake(HandshakeError::TimedOut | HandshakeError::Incomplete) => Retry::Backoff,
        Error::Http(response) => {
            let status = response.status();
            if status == 429 || (500..=599).contains(&status) {
                match retry_after(response) {
                    Some(after) => Retry::After(after),
                    None => Retry::Backoff,
                }
            } else {
                Retry::No
            }
        }
        #[cfg(feature = "rustls")]
        Error::Tls(_) => Retry::No,
        Error::AbnormalClosure | Error::KeepAliveTimeout => Retry::Backoff,
        _ => Retry::No,
    }
}

/// `Retry-After` (RFC 9110 §10.2.3): delta-seconds, or an HTTP date (IMF-fixdate), which
/// is read against this machine's clock (a date already past: retry at once).
fn retry_after(response: &Response) -> Option<Duration> {
    let value = response.header("Retry-After")?.trim();
    if !value.is_empty() && value.len() <= 10 && value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = http_date(value)?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Reads an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7), the form
/// servers send; the obsolete forms are not read.
fn http_date(value: &str) -> Option<SystemTime> {
    let (_weekday, rest) = value.split_once(", ")?;
    let parts: Vec<&str> = rest.split(' ').collect();
    let [day, month, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let number = |s: &str, len: usize| -> Option<i64> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit())).then(|| s.parse().ok())?
    };
    let day = number(day, 2).filter(|d| (1..=31).contains(d))?;
    let month = MONTHS.iter().position(|m| m == month)? as i64 + 1;
    let year = number(year, 4)?;
    let hms: Vec<&str> = time.split(':').collect();
    let [h, m, s] = hms.as_slice() else {
        return None;
    };
    let h = number(h, 2).filter(|h| *h < 24)?;
    let m = number(m, 2).filter(|m| *m < 60)?;
    let s = number(s, 2).filter(|s| *s < 61)?;
    let secs = days_since_epoch(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
    Some(UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

/// Days from 1970-01-01 to a date of the proleptic Gregorian calendar (`month` 1-12),
/// counting whole 400-year cycles of 146,097 days and the days into the last one from
/// 1 March, so that February's length only matters at the end of a year.
fn days_since_epoch(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let cycle = year.div_euclid(400);
    let year_of_cycle = year - cycle * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_cycle = year_of_cycle * 365 + year_of_cycle / 4 - year_of_cycle / 100 + day_of_year;
    // 719,468 days from 0000-03-01 to 1970-01-01.
    cycle * 146_097 + day_of_cycle - 719_468
}

/// Stops a [`Reconnecting`] from another thread: a wait in progress ends at once, and the
/// iterator returns `None` from then on (a connection already handed out is not touched).
#[derive(Debug, Clone, Default)]
pub struct StopHandle(Arc<(Mutex<bool>, Condvar)>);

impl StopHandle {
    /// Stops the iterator.
    pub fn stop(&self) {
        let (stopped, wake) = &*self.0;
        *stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        wake.notify_all();
    }

    /// Whether [`stop`](Self::stop) was called.
    pub fn is_stopped(&self) -> bool {
        *self.0 .0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits `delay` unless stopped first; `false` if stopped. A delay too long for the
    /// clock waits until stopped.
    fn sleep(&self, delay: Duration) -> bool {
        let (stopped, wake) = &*self.0;
        let deadline = Instant::now().checked_add(delay);
        let mut guard = stopped.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            if *guard {
                return false;
            }
            guard = match deadline {
                None => wake.wait(guard).unwrap_or_else(PoisonError::into_inner),
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return true;
                    }
                    wake.wait_timeout(guard, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
            };
        }
    }
}

type Connect<S> = fn(ClientBuilder) -> Result<(WebSocket<S>, Response), Error>;
type OnRetry = Box<dyn FnMut(&Error, Duration) + Send>;

/// An iterator of connections to one URL, made by [`ClientBuilder::reconnecting`] (and
/// `ClientBuilder::reconnecting_tls` with feature `rustls`).
///
/// Each `next()` connects, retrying failed attempts that [`retry_policy`] allows after a
/// [`Backoff`] delay, and returns:
///
/// - `Some(Ok((ws, response)))`: a connection; use it until it ends, then call `next()`
///   again (the `for` loop does). The first connect is immediate; a reconnect after a
///   connection ended waits a jittered delay first, whose window keeps growing while
///   connections end sooner than [`Backoff::max`] after they were made (so a server that
///   accepts and drops at once is not hammered), and starts again from
///   [`Backoff::initial`] after one that lasted longer;
/// - `Some(Err(e))`, then `None`: an error that is not retried, or the last one when
///   [`max_attempts`](Self::max_attempts) attempts in a row failed;
/// - `None`: after [`StopHandle::stop`].
///
/// ```no_run
/// use std::time::Duration;
/// use stdws::{Backoff, ClientBuilder, Message};
///
/// let connections = ClientBuilder::new("ws://127.0.0.1:9001/feed")
///     .reconnecting()
///     .backoff(Backoff::new(Duration::from_millis(500), Duration::from_secs(30), 2.0))
///     .on_retry(|error, delay| eprintln!("{error}; retrying in {delay:?}"));
/// for connection in connections {
///     let (mut ws, _response) = connection?; // an error that is not worth retrying
///     ws.send_text(r#"{"subscribe": "prices"}"#)?; // after every (re)connect
///     while let Ok(message) = ws.read() {
///         if let Message::Text(text) = message {
///             println!("{text}");
///         }
///     }
///     // The connection ended (closed, reset, timed out): the loop reconnects.
/// }
/// # Ok::<(), stdws::Error>(())
/// ```
pub struct Reconnecting<S> {
    builder: ClientBuilder,
    connect: Connect<S>,
    backoff: Backoff,
    max_attempts: Option<u32>,
    /// Failed attempts in a row (reset by a connection).
    failed: u32,
    /// The backoff's exponent: failures and short-lived connections since the last
    /// connection that lasted.
    level: u32,
    /// When the connection handed out last was made.
    connected_at: Option<Instant>,
    done: bool,
    rng: Rng,
    stop: StopHandle,
    on_retry: Option<OnRetry>,
}

impl<S> fmt::Debug for Reconnecting<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("url", &self.builder.url)
            .field("backoff", &self.backoff)
            .field("max_attempts", &self.max_attempts)
            .field("failed", &self.failed)
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl<S> Reconnecting<S> {
    pub(crate) fn new(builder: ClientBuilder, connect: Connect<S>) -> Self {
        Reconnecting {
            builder,
            connect,
            backoff: Backoff::default(),
            max_attempts: None,
            failed: 0,
            level: 0,
            connected_at: None,
            done: false,
            rng: Rng::new(),
            stop: StopHandle::default(),
            on_retry: None,
        }
    }

    /// The delays between attempts (default: [`Backoff::default`]).
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Gives up after `max` attempts in a row failed (the last error is returned); `None`
    /// (the default) retries for as long as the errors are worth retrying. `Some(0)` is
    /// taken as `Some(1)`.
    pub fn max_attempts(mut self, max: Option<u32>) -> Self {
        self.max_attempts = max.map(|m| m.max(1));
        self
    }

    /// Calls `hook` with each failed attempt's error and the delay before the next one
    /// (for logging).
    pub fn on_retry(mut self, hook: impl FnMut(&Error, Duration) + Send + 'static) -> Self {
        self.on_retry = Some(Box::new(hook));
        self
    }

    /// A handle that stops the iteration from another thread (e.g. on shutdown), also
    /// during a wait.
    pub fn stop_handle(&self) -> StopHandle {
        self.stop.clone()
    }

    /// Failed attempts since the last connection.
    pub fn failed_attempts(&self) -> u32 {
        self.failed
    }

    /// A uniform number in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Waits `delay` unless stopped; ends the iteration if stopped.
    fn wait(&mut self, delay: Duration) -> bool {
        if self.stop.sleep(delay) {
            true
        } else {
            self.done = true;
            false
        }
    }
}

impl<S> Iterator for Reconnecting<S> {
    type Item = Result<(WebSocket<S>, Response), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.stop.is_stopped() {
            self.done = true;
            return None;
        }
        if let Some(made) = self.connected_at.take() {
            // The caller is done with the last connection: it ended.
            if made.elapsed() >= self.backoff.max {
                self.level = 0;
            }
            let unit = self.unit();
            let delay = self.backoff.jittered(self.level, unit);
            self.level = self.level.saturating_add(1);
            if !self.wait(delay) {
                return None;
            }
        }
        loop {
            match (self.connect)(self.builder.clone()) {
                Ok(connection) => {
                    self.failed = 0;
                    self.connected_at = Some(Instant::now());
                    return Some(Ok(connection));
                }
                Err(error) => {
                    self.failed = self.failed.saturating_add(1);
                    let decision = retry_policy(&error);
                    let exhausted = self.max_attempts.is_some_and(|m| self.failed >= m);
                    if decision == Retry::No || exhausted || self.stop.is_stopped() {
                        self.done = true;
                        return Some(Err(error));
                    }
                    let delay = match decision {
                        Retry::After(after) => after.min(self.backoff.max),
                        _ => {
                            let unit = self.unit();
                            self.backoff.jittered(self.level, unit)
                        }
                    };
                    self.level = self.level.saturating_add(1);
                    if let Some(hook) = &mut self.on_retry {
                        hook(&error, delay);
                    }
                    if !self.wait(delay) {
                        return None;
                    }
                }
            }
        }
    }
}

impl ClientBuilder {
    /// Connections to the URL, made again whenever the caller asks for the next one, with
    /// backoff between failed attempts: see [`Reconnecting`]. Every option of this builder
    /// (headers, subprotocols, timeouts, redirects, proxy) applies to every attempt.
    pub fn reconnecting(self) -> Reconnecting<TcpStream> {
        Reconnecting::new(self, ClientBuilder::connect)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_grow_to_the_maximum_and_jitter_stays_inside() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(1), 2.0);
        assert_eq!(b.window(0), Duration::from_millis(100));
        assert_eq!(b.window(1), Duration::from_millis(200));
        assert_eq!(b.window(3), Duration::from_millis(800));
        assert_eq!(b.window(4), Duration::from_secs(1));
        assert_eq!(b.window(u32::MAX), Duration::from_secs(1));
        assert_eq!(b.jittered(2, 0.0), Duration::ZERO);
        assert_eq!(b.jittered(2, 0.5), Duration::from_millis(200));
        assert!(b.jittered(2, 0.999_999) < Duration::from_millis(400));
        // Nonsense factors and a maximum below the start are made sane.
        let odd = Backoff::new(Duration::from_secs(2), Duration::from_secs(1), f64::NAN);
        assert_eq!((odd.factor(), odd.max()), (1.0, Duration::from_secs(2)));
        assert_eq!(odd.window(50), Duration::from_secs(2));
    }

    #[test]
    fn jitter_is_spread_over_the_window() {
        let mut r = Reconnecting::new(ClientBuilder::new("ws://h/"), ClientBuilder::connect);
        let draws: Vec<f64> = (0..1000).map(|_| r.unit()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        let low = draws.iter().filter(|&&u| u < 0.5).count();
        assert!((400..600).contains(&low), "{low} of 1000 below 0.5");
    }

    fn http(status: u16, extra: &str) -> Error {
        let head = format!("HTTP/1.1 {status} X\r\n{extra}\r\n");
        Error::Http(Box::new(Response::parse(head.as_bytes(), 16).unwrap()))
    }

    #[test]
    fn policy() {
        use std::io;
        for kind in [
            ErrorKind::ConnectionRefused,
            ErrorKind::ConnectionReset,
            ErrorKind::TimedOut,
            ErrorKind::UnexpectedEof,
        ] {
            assert_eq!(retry_policy(&Error::Io(kind.into())), Retry::Backoff);
        }
        let dns = Error::Resolve(io::Error::other("no such host"));
        assert_eq!(retry_policy(&dns), Retry::Backoff);
        assert_eq!(
            retry_policy(&HandshakeError::TimedOut.into()),
            Retry::Backoff
        );
        assert_eq!(retry_policy(&http(503, "")), Retry::Backoff);
        assert_eq!(retry_policy(&http(502, "")), Retry::Backoff);
        assert_eq!(
            retry_policy(&http(503, "Retry-After: 7\r\n")),
            Retry::After(Duration::from_secs(7))
        );
        assert_eq!(
            retry_policy(&http(429, "Retry-After: 2\r\n")),
            Retry::After(Duration::from_secs(2))
        );
        // A date: how long until then (past: at once); one that does not parse: backoff.
        assert_eq!(
            retry_policy(&http(429, "Retry-After: Wed, 21 Oct 2015 07:28:00 GMT\r\n")),
            Retry::After(Duration::ZERO)
        );
        match retry_policy(&http(503, "Retry-After: Fri, 01 Jan 2100 00:00:00 GMT\r\n")) {
            Retry::After(d) => assert!(d > Duration::from_secs(60 * 365 * 86_400)),
            other => panic!("{other:?}"),
        }
        assert_eq!(
            retry_policy(&http(429, "Retry-After: soon\r\n")),
            Retry::Backoff
        );
        for status in [400, 401, 403, 404, 410, 426, 301] {
            assert_eq!(retry_policy(&http(status, "")), Retry::No, "{status}");
        }
        assert_eq!(
            retry_policy(&HandshakeError::AcceptMismatch.into()),
            Retry::No
        );
        assert_eq!(
            retry_policy(&crate::url::UrlError::MissingHost.into()),
            Retry::No
        );
        assert_eq!(retry_policy(&Error::InvalidInput("x")), Retry::No);
    }

    #[test]
    fn http_dates() {
        let unix = |v: &str| http_date(v).map(|t| t.duration_since(UNIX_EPOCH).unwrap().as_secs());
        assert_eq!(unix("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(unix("Sun, 06 Nov 1994 08:49:37 GMT"), Some(784_111_777));
        assert_eq!(unix("Tue, 29 Feb 2000 23:59:59 GMT"), Some(951_868_799));
        assert_eq!(unix("Wed, 01 Mar 2000 00:00:00 GMT"), Some(951_868_800));
        assert_eq!(unix("Fri, 31 Dec 1999 23:59:60 GMT"), Some(946_684_800));
        for bad in [
            "",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 00 Nov 1994 08:49:37 GMT",
            "Wed, 31 Dec 1969 23:59:59 GMT",
            "Sun, 06 Nov +994 08:49:37 GMT",
        ] {
            assert_eq!(unix(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_stop_ends_a_wait_at_once() {
        let stop = StopHandle::default();
        let other = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.stop();
        });
        let start = Instant::now();
        assert!(!stop.sleep(Duration::from_secs(10)));
        assert!(start.elapsed() < Duration::from_secs(5));
        t.join().unwrap();
        assert!(StopHandle::default().sleep(Duration::from_millis(1)));
        // A delay past what the clock can hold waits until stopped, without a panic.
        let stop = StopHandle::default();
        let other = stop.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            other.stop();
        });
        assert!(!stop.sleep(Duration::MAX));
        t.join().unwrap();
    }
}
