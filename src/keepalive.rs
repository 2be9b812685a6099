//! Keep-alive (RFC 6455 §5.5.2-5.5.3): ping a quiet peer, and give up on one whose pong
//! does not come.
//!
//! No extra thread: the reader checks the timers whenever a read on the stream times out.
//! On a stream whose read timeout the connection can set (a [`Socket`](crate::Socket)), the
//! read loop waits only until the next deadline by itself ([`read_wait`]) and gives the
//! caller only the timeouts that are the caller's ([`timeout_is_callers`]). The timer logic
//! here is pure, on the time passed in; the read loop acts on what [`Timer::tick`] says.

use std::time::{Duration, Instant};

/// Keep-alive settings: send a ping after `interval` without hearing from the peer, and fail
/// the connection (close code 1011, [`Error::KeepAliveTimeout`](crate::Error)) if nothing
/// arrives within `timeout` of that ping.
///
/// ```
/// use std::time::Duration;
/// let config = stdws::Config::default()
///     .keepalive(Some(stdws::KeepAlive::new(Duration::from_secs(20), Duration::from_secs(20))));
/// assert!(config.keepalive.is_some());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// Quiet time after which a ping is sent.
    pub interval: Duration,
    /// How long to wait for any sign of life after that ping.
    pub timeout: Duration,
}

impl KeepAlive {
    /// Ping after `interval` of silence; give up `timeout` after the ping.
    pub fn new(interval: Duration, timeout: Duration) -> Self {
        KeepAlive { interval, timeout }
    }
}

/// What the read loop should do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tick {
    Nothing,
    SendPing,
    TimedOut,
}

#[derive(Debug)]
pub(crate) struct Timer {
    settings: KeepAlive,
    last_heard: Instant,
    ping_sent: Option<Instant>,
}

impl Timer {
    pub fn new(settings: KeepAlive, now: Instant) -> Timer {
        Timer {
            settings,
            last_heard: now,
            ping_sent: None,
        }
    }

    /// Bytes arrived from the peer: it is alive.
    pub fn heard(&mut self, now: Instant) {
        self.last_heard = now;
        self.ping_sent = None;
    }

    /// When [`tick`](Self::tick) next has something to do: the ping is due, or the wait for
    /// an answer to it runs out.
    pub fn deadline(&self) -> Instant {
        match self.ping_sent {
            Some(sent) => sent + self.settings.timeout,
            None => self.last_heard + self.settings.interval,
        }
    }

    /// Decides whether a ping is due or the peer is overdue.
    pub fn tick(&mut self, now: Instant) -> Tick {
        match self.ping_sent {
            Some(sent) if now.saturating_duration_since(sent) >= self.settings.timeout => {
                Tick::TimedOut
            }
            Some(_) => Tick::Nothing,
            None if now.saturating_duration_since(self.last_heard) >= self.settings.interval => {
                self.ping_sent = Some(now);
                Tick::SendPing
            }
            None => Tick::Nothing,
        }
    }
}

/// The shortest read timeout the read loop sets: a timer that is due (a ping that could not
/// go out because a writer holds the socket) is retried this often, not in a busy loop.
const MIN_WAIT: Duration = Duration::from_millis(2);

/// How early a timed-out read may return and still count as the timeout that was set: a
/// kernel rounds socket timeouts to its clock tick (10 ms at 100 Hz).
const SLACK: Duration = Duration::from_millis(10);

/// How long the next read may block, at `now`, when the read loop waits by itself: until
/// the keep-alive `deadline` or the `caller`'s own read deadline, whichever comes first.
pub(crate) fn read_wait(now: Instant, deadline: Instant, caller: Option<Instant>) -> Duration {
    let until = caller.map_or(deadline, |c| c.min(deadline));
    until.saturating_duration_since(now).max(MIN_WAIT)
}

/// Whether a read that timed out at `now`, having waited for `waited_for` (what
/// [`read_wait`] allowed), is reported to the caller: the caller's own read timeout ran out,
/// or the stream gave up well before `waited_for` (a non-blocking stream, or one whose read
/// timeout is not the one set). Otherwise it is the keep-alive timer's own wake-up, which
/// the caller never sees.
pub(crate) fn timeout_is_callers(
    now: Instant,
    waited_for: Instant,
    caller: Option<Instant>,
) -> bool {
    caller.is_some_and(|c| now + SLACK >= c) || now + SLACK < waited_for
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pings_after_silence_and_times_out_without_an_answer() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut timer = Timer::new(
            KeepAlive::new(Duration::from_secs(10), Duration::from_secs(5)),
            t0,
        );
        assert_eq!(timer.deadline(), s(10));
        assert_eq!(timer.tick(s(9)), Tick::Nothing);
        assert_eq!(timer.tick(s(10)), Tick::SendPing);
        assert_eq!(timer.deadline(), s(15));
        assert_eq!(timer.tick(s(12)), Tick::Nothing, "one ping at a time");
        assert_eq!(timer.tick(s(15)), Tick::TimedOut);
    }

    #[test]
    fn anything_heard_resets_the_timers() {
        let t0 = Instant::now();
        let s = |n| t0 + Duration::from_secs(n);
        let mut timer = Timer::new(
            KeepAlive::new(Duration::from_secs(10), Duration::from_secs(5)),
            t0,
        );
        assert_eq!(timer.tick(s(10)), Tick::SendPing);
        timer.heard(s(11));
        assert_eq!(timer.tick(s(16)), Tick::Nothing);
        assert_eq!(timer.tick(s(21)), Tick::SendPing);
    }

    #[test]
    fn the_loop_waits_for_the_nearer_deadline() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        assert_eq!(read_wait(t0, ms(500), None), Duration::from_millis(500));
        assert_eq!(
            read_wait(t0, ms(500), Some(ms(200))),
            Duration::from_millis(200)
        );
        assert_eq!(
            read_wait(t0, ms(500), Some(ms(900))),
            Duration::from_millis(500)
        );
        // A due timer is retried after a short wait, never with a zero (blocking) timeout.
        assert_eq!(read_wait(ms(600), ms(500), None), MIN_WAIT);
    }

    #[test]
    fn only_the_callers_timeouts_reach_the_caller() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        // Our own wake-up at the keep-alive deadline (or a clock tick before it).
        assert!(!timeout_is_callers(ms(500), ms(500), None));
        assert!(!timeout_is_callers(ms(495), ms(500), Some(ms(900))));
        // The caller's timeout ran out.
        assert!(timeout_is_callers(ms(200), ms(200), Some(ms(200))));
        // A non-blocking stream: `WouldBlock` at once.
        assert!(timeout_is_callers(t0, ms(500), None));
    }
}
