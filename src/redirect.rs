//! Redirects of the opening handshake (RFC 9110 §15.4): which answers are redirects, and the
//! URL a `Location` leads to from the URL that was asked.
//!
//! Pure: no stream, no clock. `ClientBuilder::connect` follows what this file computes, up
//! to `ClientBuilder::max_redirects`. A `Location` may be absolute (`ws://`, `wss://`, and
//! `http://`/`https://`, which name the same hosts: a server that redirects a WebSocket
//! handshake often writes `https://`), scheme-relative (`//host/path`), an absolute path
//! (`/path?query`) or a relative path (resolved against the asked path's directory). A
//! fragment is dropped. A redirect from `wss://` to `ws://` is refused: it would send the
//! rest of the conversation in the clear.

use std::fmt;

use crate::url::WsUrl;

/// Why a redirect of the opening handshake was not followed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedirectError {
    /// More redirects than [`ClientBuilder::max_redirects`](crate::ClientBuilder::max_redirects)
    /// allows in a row; `location` is the one that was not followed.
    TooMany {
        /// The limit that was reached.
        max: usize,
        /// The `Location` of the redirect that was not followed.
        location: String,
    },
    /// A redirect from `wss://` to `ws://` (or `http://`): refused, so that what was meant
    /// for a TLS connection never goes out in the clear.
    InsecureDowngrade {
        /// The `Location` of the redirect.
        location: String,
    },
    /// The `Location` header is not a URL this client can follow (another scheme, a bad
    /// host or port, characters a request line cannot carry).
    InvalidLocation {
        /// The `Location` of the redirect.
        location: String,
        /// What is wrong with it.
        reason: String,
    },
}

impl fmt::Display for RedirectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RedirectError::TooMany { max, location } => write!(
                f,
                "too many redirects (the limit is {max}); the next one was to {location:?}"
            ),
            RedirectError::InsecureDowngrade { location } => write!(
                f,
                "refused a redirect from wss:// to the unencrypted {location:?}"
            ),
            RedirectError::InvalidLocation { location, reason } => {
                write!(f, "cannot follow the redirect to {location:?}: {reason}")
            }
        }
    }
}

impl std::error::Error for RedirectError {}

/// Whether `status` is a redirect that a handshake follows: 301, 302, 303, 307 or 308.
pub fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// The URL that `location` leads to from `current` (a valid `ws://` or `wss://` URL).
pub fn resolve(current: &WsUrl, location: &str) -> Result<String, RedirectError> {
    let invalid = |reason: &str| RedirectError::InvalidLocation {
        location: location.to_owned(),
        reason: reason.to_owned(),
    };
    let trimmed = location.trim();
    let trimmed = trimmed
        .split_once('#')
        .map_or(trimmed, |(before, _)| before);
    if trimmed.is_empty() {
        return Err(invalid("empty Location"));
    }
    let scheme = if current.secure { "wss" } else { "ws" };
    let authority = &current.host_header;
    let absolute = if let Some((s, rest)) = trimmed.split_once("://").filter(|(s, _)| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    }) {
        let new_scheme = match s.to_ascii_lowercase().as_str() {
            "ws" | "http" => "ws",
            "wss" | "https" => "wss",
            _ => return Err(invalid("not a ws, wss, http or https URL")),
        };
        format!("{new_scheme}://{rest}")
    } else if let Some(rest) = trimmed.strip_prefix("//") {
        format!("{scheme}://{rest}")
    } else if trimmed.starts_with('/') {
        format!("{scheme}://{authority}{trimmed}")
    } else {
        // A relative path: against the directory of the asked path (its query dropped).
        let path = current.resource.split('?').next().unwrap_or("/");
        let dir = &path[..path.rfind('/').map_or(0, |i| i + 1)];
        format!("{scheme}://{authority}{dir}{trimmed}")
    };
    let next = WsUrl::parse(&absolute).map_err(|e| invalid(&e.to_string()))?;
    if current.secure && !next.secure {
        return Err(RedirectError::InsecureDowngrade {
            location: location.to_owned(),
        });
    }
    Ok(absolute)
}

/// Whether `a` and `b` name the same host and port (credentials sent to one may go to the
/// other).
pub fn same_origin(a: &WsUrl, b: &WsUrl) -> bool {
    a.secure == b.secure && a.host.eq_ignore_ascii_case(&b.host) && a.port == b.port
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from(current: &str, location: &str) -> Result<String, RedirectError> {
        resolve(&WsUrl::parse(current).unwrap(), location)
    }

    #[test]
    fn statuses() {
        for s in [301, 302, 303, 307, 308] {
            assert!(is_redirect(s));
        }
        for s in [101, 200, 300, 304, 305, 306, 400, 503] {
            assert!(!is_redirect(s));
        }
    }

    #[test]
    fn resolves_absolute_relative_and_mapped_locations() {
        let ok = |c, l| from(c, l).unwrap();
        assert_eq!(ok("ws://a/x", "ws://b:81/y?z"), "ws://b:81/y?z");
        assert_eq!(ok("ws://a/x", "wss://b/y"), "wss://b/y");
        assert_eq!(ok("ws://a/x", "http://b/y"), "ws://b/y");
        assert_eq!(ok("ws://a/x", "HTTPS://b/y"), "wss://b/y");
        assert_eq!(ok("wss://a/x", "//b/y"), "wss://b/y");
        assert_eq!(ok("ws://a:9/x", "/y?q=1"), "ws://a:9/y?q=1");
        assert_eq!(ok("ws://a:9/d/x?q", "y"), "ws://a:9/d/y");
        assert_eq!(ok("ws://[::1]:9/x", "/y#frag"), "ws://[::1]:9/y");
        assert_eq!(ok("wss://a/x", " wss://b/ "), "wss://b/");
    }

    #[test]
    fn refuses_downgrades_and_bad_locations() {
        assert!(matches!(
            from("wss://a/x", "ws://a/x"),
            Err(RedirectError::InsecureDowngrade { .. })
        ));
        assert!(matches!(
            from("wss://a/x", "http://a/x"),
            Err(RedirectError::InsecureDowngrade { .. })
        ));
        for bad in [
            "",
            "ftp://a/",
            "ws://a b/",
            "ws://a:0/",
            "/a b",
            "ws://u:p@a/",
        ] {
            assert!(
                matches!(
                    from("ws://a/x", bad),
                    Err(RedirectError::InvalidLocation { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn origins() {
        let p = |u| WsUrl::parse(u).unwrap();
        assert!(same_origin(&p("ws://A:80/x"), &p("ws://a/y")));
        assert!(!same_origin(&p("ws://a/"), &p("ws://a:81/")));
        assert!(!same_origin(&p("ws://a/"), &p("wss://a/")));
        assert!(!same_origin(&p("ws://a/"), &p("ws://b/")));
    }
}
