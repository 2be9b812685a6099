//! Where a connection stands (RFC 6455 §4-7): which end it is ([`Role`]) and its state.

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: receives masked frames, sends unmasked ones.
    Server,
    /// Opened the connection: sends masked frames, receives unmasked ones.
    Client,
}

use crate::close::CloseFrame;

/// Where a connection stands: the four states of RFC 6455 (§4 to §7) under the names the
/// browser's `WebSocket.readyState` gives them.
///
/// ```
/// # use std::net::TcpListener;
/// # let listener = TcpListener::bind("127.0.0.1:0")?;
/// # let url = format!("ws://{}/", listener.local_addr()?);
/// # let server = std::thread::spawn(move || -> stdws::Result<()> {
/// #     let mut ws = stdws::accept(listener.accept()?.0)?;
/// #     while !matches!(ws.read()?, stdws::Message::Close(_)) {}
/// #     Ok(())
/// # });
/// use stdws::State;
///
/// let (mut ws, _) = stdws::connect(&url)?;
/// assert_eq!(ws.state(), State::Open);
/// ws.close(1000, "done")?;
/// assert_eq!(ws.state(), State::Closing); // reading goes on until the server's close
/// while !matches!(ws.read()?, stdws::Message::Close(_)) {}
/// assert_eq!(ws.state(), State::Closed);
/// # server.join().unwrap()?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// The opening handshake is under way (a handshake driven over bytes; a
    /// [`WebSocket`](crate::WebSocket) starts `Open`).
    Connecting,
    /// Messages go both ways.
    Open,
    /// This end sent its close frame and waits for the peer's: messages can still be read,
    /// none can be sent.
    Closing,
    /// The closing handshake is complete, or the connection failed or was cut: nothing more
    /// can be sent, and `read` reports how it ended (once), then `AlreadyClosed`.
    Closed,
}

impl State {
    /// A code for an atomic copy of the state (split connections).
    pub(crate) fn code(self) -> u8 {
        self as u8
    }

    /// The state a [`code`](Self::code) stands for.
    pub(crate) fn from_code(code: u8) -> State {
        match code {
            0 => State::Connecting,
            1 => State::Open,
            2 => State::Closing,
            _ => State::Closed,
        }
    }
}

/// The connection's life as the core tracks it: the public [`State`], plus the peer's close
/// frame until the end has been reported. Every transition is a method here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    Open,
    /// We sent a close frame and wait for the peer's.
    CloseSent,
    /// The closing handshake is complete; `ConnectionClosed` is not reported yet.
    Closed(Option<CloseFrame>),
    /// How the connection ended was reported, or it failed: everything fails with
    /// `AlreadyClosed`.
    Ended,
}

impl Lifecycle {
    /// The public state.
    pub fn state(&self) -> State {
        match self {
            Lifecycle::Open => State::Open,
            Lifecycle::CloseSent => State::Closing,
            Lifecycle::Closed(_) | Lifecycle::Ended => State::Closed,
        }
    }

    /// Whether messages may still be sent.
    #[inline(always)]
    pub fn is_open(&self) -> bool {
        *self == Lifecycle::Open
    }

    /// Whether messages may still arrive (the peer's close has not, and nothing failed).
    #[inline(always)]
    pub fn is_reading(&self) -> bool {
        matches!(self, Lifecycle::Open | Lifecycle::CloseSent)
    }

    /// Our close frame was queued: Open to CloseSent.
    pub fn close_sent(&mut self) {
        if self.is_open() {
            *self = Lifecycle::CloseSent;
        }
    }

    /// The peer's close frame arrived: the closing handshake is complete.
    pub fn peer_closed(&mut self, frame: &Option<CloseFrame>) {
        *self = Lifecycle::Closed(frame.clone());
    }

    /// The connection failed or its end was reported.
    pub fn end(&mut self) {
        *self = Lifecycle::Ended;
    }

    /// The peer's close frame of a completed closing handshake whose end is reported now
    /// (`None` if there is nothing to report: it was, or the connection failed); then Ended.
    pub fn take_report(&mut self) -> Option<Option<CloseFrame>> {
        match std::mem::replace(self, Lifecycle::Ended) {
            Lifecycle::Closed(frame) => Some(frame),
            _ => None,
        }
    }
}
