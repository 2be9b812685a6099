//! Close codes and close frame bodies (RFC 6455 §5.5.1, §7.4), as pure functions over byte
//! slices.
//!
//! A close body is empty, or a 2-byte big-endian code followed by a UTF-8 reason. The whole
//! body is a control payload, so the reason is at most 123 bytes.
//!
//! This file names nothing else in the crate, so that the crate-wide `Error` (in `error.rs`)
//! can carry a [`CloseFrame`] and a [`CloseCode`]: a body or frame it refuses is reported
//! with its own [`InvalidCloseBody`] or [`Unsendable`], which `error.rs` turns into an
//! `Error` with `From`. `close/mod.rs`, the public `stdws::close` module, re-exports what is
//! public here.

use std::fmt;

/// Longest close reason that fits a control frame (125 bytes minus the 2-byte code).
pub const MAX_REASON_LEN: usize = 123;

/// A close status code (RFC 6455 §7.4).
///
/// Constants name the codes the RFC defines; any other `u16` can be built with
/// [`CloseCode::from`]. Whether a code may appear in a close frame is
/// [`is_valid`](Self::is_valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(u16);

impl CloseCode {
    /// 1000: normal closure; the purpose of the connection was fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, page navigated away).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer violated the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint cannot accept this kind of data (e.g. binary when only text is
    /// understood).
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: no status code was present. Never sent on the wire.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: the connection closed without a close frame. Never sent on the wire.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a message's data was inconsistent with its type (invalid UTF-8 text).
    pub const INVALID_DATA: CloseCode = CloseCode(1007);
    /// 1008: the message violates the endpoint's policy.
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a message was too big to process.
    pub const TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected the server to negotiate an extension.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server met an unexpected condition.
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// Whether this code may be sent or received in a close frame: 1000-1003, 1007-1011 and
    /// 3000-4999. The rest are unassigned (<1000, 1016-2999, >=5000), reserved (1004) or only
    /// for local reporting (1005, 1006, 1015), and a peer sending one fails the connection.
    ///
    /// 1012-1014 are registered with IANA after RFC 6455 but are not in the RFC; like
    /// tungstenite and browsers' strict modes this crate treats them as invalid on the wire.
    pub const fn is_valid(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1011 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// The body of a close frame: a status code and a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseFrame {
    /// The status code.
    pub code: CloseCode,
    /// A human-readable reason, at most 123 bytes of UTF-8 (may be empty).
    pub reason: String,
}

impl CloseFrame {
    /// A close frame with `code` and `reason`.
    pub fn new(code: impl Into<CloseCode>, reason: impl Into<String>) -> Self {
        CloseFrame {
            code: code.into(),
            reason: reason.into(),
        }
    }

    /// Checks that this frame may be sent: a valid code and a reason of at most 123 bytes.
    pub(crate) fn check_sendable(&self) -> Result<(), Unsendable> {
        if !self.code.is_valid() {
            return Err(Unsendable(
                "close code may not be sent (valid: 1000-1003, 1007-1011, 3000-4999)",
            ));
        }
        if self.reason.len() > MAX_REASON_LEN {
            return Err(Unsendable("close reason longer than 123 bytes"));
        }
        Ok(())
    }

    /// Writes the close body (code then reason) to `out`.
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.code.0.to_be_bytes());
        out.extend_from_slice(self.reason.as_bytes());
    }
}

impl fmt::Display for CloseFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.reason.is_empty() {
            write!(f, "code {}", self.code)
        } else {
            write!(f, "code {} ({:?})", self.code, self.reason)
        }
    }
}

/// A close frame that may not be sent (§5.5.1, §7.4.1), and why. `error.rs` reports it as
/// `Error::InvalidInput` with this text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unsendable(pub(crate) &'static str);

/// Why a received close body was refused (§5.5.1, §7.4). `error.rs` reports each case as the
/// `Error` named below, which fails the connection with the close code in parentheses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum InvalidCloseBody {
    /// A 1-byte body: `ProtocolError::InvalidClosePayload` (1002).
    OneByte,
    /// A code that may not be used on the wire: `ProtocolError::InvalidCloseCode` (1002).
    Code(u16),
    /// A reason that is not UTF-8: `Error::Utf8` (1007).
    Utf8,
}

/// Parses a received close body. An empty body is `None`; a 1-byte body, an invalid code
/// (1002) or a non-UTF-8 reason (1007) is an error. The public
/// `stdws::close::parse_close_payload` is this, reporting with the crate-wide `Error`.
pub(crate) fn parse(payload: &[u8]) -> Result<Option<CloseFrame>, InvalidCloseBody> {
    match payload {
        [] => Ok(None),
        [_] => Err(InvalidCloseBody::OneByte),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid() {
                return Err(InvalidCloseBody::Code(code.0));
            }
            let reason = std::str::from_utf8(reason).map_err(|_| InvalidCloseBody::Utf8)?;
            Ok(Some(CloseFrame {
                code,
                reason: reason.to_owned(),
            }))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_codes_match_rfc_ranges() {
        let valid = [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999,
        ];
        let invalid = [
            0, 999, 1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ];
        for c in valid {
            assert!(CloseCode(c).is_valid(), "{c} should be valid");
        }
        for c in invalid {
            assert!(!CloseCode(c).is_valid(), "{c} should be invalid");
        }
    }

    #[test]
    fn parses_close_bodies() {
        assert_eq!(parse(&[]), Ok(None));
        assert_eq!(parse(&[3]), Err(InvalidCloseBody::OneByte));
        assert_eq!(
            parse(&[0x03, 0xe8, b'o', b'k']),
            Ok(Some(CloseFrame::new(1000, "ok")))
        );
        assert_eq!(parse(&[0x03, 0xed]), Err(InvalidCloseBody::Code(1005)));
        assert_eq!(parse(&[0x03, 0xe8, 0xff]), Err(InvalidCloseBody::Utf8));
    }

    #[test]
    fn sendable_checks_code_and_reason_length() {
        assert!(CloseFrame::new(1000, "x".repeat(123))
            .check_sendable()
            .is_ok());
        assert!(CloseFrame::new(1000, "x".repeat(124))
            .check_sendable()
            .is_err());
        assert!(CloseFrame::new(1006, "").check_sendable().is_err());
        assert!(CloseFrame::new(4999, "").check_sendable().is_ok());
    }
}
