//! Percent-decoding (RFC 3986 §2.1) of a request target's path and query, and the
//! `application/x-www-form-urlencoded` pairs of a query (`a=1&b=x+y`, the WHATWG URL
//! standard's parser, minus its leniency: an invalid escape is an error, not kept as it is).
//! Pure; the decoded text must be UTF-8.

use std::borrow::Cow;
use std::fmt;

/// Why a request's path or query could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PercentDecodeError {
    /// A `%` not followed by two hexadecimal digits.
    InvalidEscape,
    /// The decoded bytes are not UTF-8.
    NotUtf8,
}

impl fmt::Display for PercentDecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PercentDecodeError::InvalidEscape => "a '%' is not followed by two hex digits",
            PercentDecodeError::NotUtf8 => "percent-decoded bytes are not UTF-8",
        })
    }
}

impl std::error::Error for PercentDecodeError {}

/// Decodes `%XX` escapes in `s` (and, if `plus_is_space`, `+` as a space, as in a query's
/// form encoding). Borrows when there is nothing to decode.
pub(crate) fn decode(s: &str, plus_is_space: bool) -> Result<Cow<'_, str>, PercentDecodeError> {
    let special = |b: u8| b == b'%' || (plus_is_space && b == b'+');
    if !s.bytes().any(special) {
        return Ok(Cow::Borrowed(s));
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = |at: usize| bytes.get(at).and_then(|&b| (b as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err(PercentDecodeError::InvalidEscape);
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if plus_is_space => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| PercentDecodeError::NotUtf8)
}

/// The name/value pairs of a form-encoded query, decoded, in order: pieces between `&`,
/// each split at its first `=` (no `=`: an empty value); empty pieces are skipped.
pub(crate) fn query_pairs(query: &str) -> Result<Vec<(String, String)>, PercentDecodeError> {
    query
        .split('&')
        .filter(|piece| !piece.is_empty())
        .map(|piece| {
            let (name, value) = piece.split_once('=').unwrap_or((piece, ""));
            Ok((
                decode(name, true)?.into_owned(),
                decode(value, true)?.into_owned(),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_escapes_and_borrows_plain_text() {
        assert!(matches!(decode("/chat", false), Ok(Cow::Borrowed("/chat"))));
        assert_eq!(decode("/a%20b%2Fc", false).unwrap(), "/a b/c");
        assert_eq!(decode("%e2%82%ac", false).unwrap(), "€");
        assert_eq!(decode("a+b", false).unwrap(), "a+b");
        assert_eq!(decode("a+b%2B", true).unwrap(), "a b+");
    }

    #[test]
    fn invalid_escapes_and_bytes_are_errors() {
        for bad in ["%", "%2", "%zz", "a%2g", "%%41"] {
            assert_eq!(
                decode(bad, false),
                Err(PercentDecodeError::InvalidEscape),
                "{bad}"
            );
        }
        assert_eq!(decode("%ff", false), Err(PercentDecodeError::NotUtf8));
        assert_eq!(decode("%e2%82", true), Err(PercentDecodeError::NotUtf8));
    }

    #[test]
    fn query_pairs_follow_the_form_encoding() {
        let pairs = query_pairs("room=a+b&&flag&token=x%3Dy%26z&room=2&=v").unwrap();
        let want = [
            ("room", "a b"),
            ("flag", ""),
            ("token", "x=y&z"),
            ("room", "2"),
            ("", "v"),
        ];
        let got: Vec<(&str, &str)> = pairs.iter().map(|(n, v)| (&n[..], &v[..])).collect();
        assert_eq!(got, want);
        assert_eq!(query_pairs(""), Ok(Vec::new()));
        assert_eq!(query_pairs("a=%"), Err(PercentDecodeError::InvalidEscape));
    }
}
