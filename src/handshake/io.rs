//! The stream side of the opening handshake (RFC 6455 §4.1, §4.2), shared by both roles:
//! reading the HTTP head off the stream within the limits of `Config` and the handshake
//! deadline, and handing the permessage-deflate parameters agreed in the handshake (RFC 7692
//! §7.1) to the new connection.
//!
//! Apart from `handshake/mod.rs` because it reports I/O failures with the crate-wide `Error`
//! and names `WebSocket`, while the request and response types there sit below `error.rs`.

use std::io::{ErrorKind, Read};
use std::time::Instant;

use crate::config::Config;
use crate::error::{is_retryable, Error};
use crate::http::{self, HandshakeError};

/// Reads from `stream` until a complete HTTP head has arrived, within the size and header
/// count limits of `config` (each checked as the bytes arrive) and by `deadline` (checked whenever a read returns, so a peer trickling bytes
/// cannot stretch the handshake; a silent peer is bounded by the stream's read timeout).
/// Returns the bytes read and the length of the head; bytes after the head (the peer's
/// first frames) are kept at the end of the buffer.
pub(crate) fn read_head<T: Read>(
    stream: &mut T,
    config: &Config,
    deadline: Option<Instant>,
) -> Result<(Vec<u8>, usize), Error> {
    let mut buf = Vec::new();
    let mut scan = http::HeadScan::default();
    loop {
        let len = buf.len();
        // Read at most a little past the limit: enough to see that a head is too large.
        let chunk = (config.max_head_size + 1)
            .saturating_sub(len)
            .clamp(1, 4096);
        buf.resize(len + chunk, 0);
        let result = stream.read(&mut buf[len..]);
        buf.truncate(len + *result.as_ref().unwrap_or(&0));
        match result {
            Ok(0) => return Err(HandshakeError::Incomplete.into()),
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) if is_retryable(e.kind()) => return Err(HandshakeError::TimedOut.into()),
            Err(e) => return Err(e.into()),
        }
        if let Some(end) =
            http::check_head(&buf, &mut scan, config.max_head_size, config.max_headers)?
        {
            return Ok((buf, end));
        }
        if deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(HandshakeError::TimedOut.into());
        }
    }
}

/// Hands the agreed permessage-deflate parameters, if any, to a new connection.
#[cfg(feature = "deflate")]
pub(crate) fn with_deflate<T: std::io::Read + std::io::Write>(
    mut ws: crate::WebSocket<T>,
    params: Option<crate::deflate::Params>,
) -> crate::WebSocket<T> {
    if let Some(params) = params {
        ws.set_deflate(params);
    }
    ws
}
