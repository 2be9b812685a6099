//! Close codes and close frame bodies (RFC 6455 §5.5.1, §7.4).
//!
//! A close body is empty, or a 2-byte big-endian code followed by a UTF-8 reason. The whole
//! body is a control payload, so the reason is at most 123 bytes.

// This file is the public `stdws::close` module and sits above `error.rs`. The codes,
// `CloseFrame` and the codec for close bodies live in `body.rs`, which names nothing else in
// the crate so that the crate-wide `Error` can carry them; this file re-exports them and
// adds `parse_close_payload`, which reports a refused body as an `Error` like the rest of
// the public API.

mod body;

pub use body::{CloseCode, CloseFrame, MAX_REASON_LEN};
pub(crate) use body::{InvalidCloseBody, Unsendable};

use crate::error::Error;

/// Parses a received close body. An empty body is `None`; a 1-byte body, an invalid code
/// (1002) or a non-UTF-8 reason (1007) is an error.
pub fn parse_close_payload(payload: &[u8]) -> Result<Option<CloseFrame>, Error> {
    Ok(body::parse(payload)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ProtocolError;

    #[test]
    fn parses_close_bodies() {
        assert_eq!(parse_close_payload(&[]).unwrap(), None);
        assert!(matches!(
            parse_close_payload(&[3]),
            Err(Error::Protocol(ProtocolError::InvalidClosePayload))
        ));
        let f = parse_close_payload(&[0x03, 0xe8, b'o', b'k'])
            .unwrap()
            .unwrap();
        assert_eq!(f, CloseFrame::new(1000, "ok"));
        assert!(matches!(
            parse_close_payload(&[0x03, 0xed]),
            Err(Error::Protocol(ProtocolError::InvalidCloseCode(1005)))
        ));
        assert!(matches!(
            parse_close_payload(&[0x03, 0xe8, 0xff]),
            Err(Error::Utf8)
        ));
    }
}
