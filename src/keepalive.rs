//! Keep-alive (RFC 6455 §5.5.2-5.5.3): ping a quiet peer, and give up on one whose pong
//! does not come.
//!
//! No extra thread: the reader checks the timers whenever the stream's read timeout fires
//! (and on every read), so the caller sets a read timeout shorter than the interval and keeps
//! calling `read`. The timer logic here is pure; the read loop acts on what [`Timer::tick`]
//! says.

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
}
