//! Proxies for the client's TCP connection: which proxy (a proxy URL, or the environment
//! variables curl reads), and why a proxy did not open the tunnel ([`ProxyError`]).
//!
//! Pure: no stream, no environment access (the caller passes a lookup function). The two
//! protocols are `http_connect.rs` (HTTP `CONNECT`, RFC 9110 §9.3.6, with Basic
//! credentials) and `socks5.rs` (RFC 1928, with RFC 1929 username/password), each only
//! building requests and checking answers; `dial.rs` does their I/O.

pub mod http_connect;
pub mod socks5;

use std::fmt;
use std::net::IpAddr;

/// Why the proxy did not give the client a tunnel to the server.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyError {
    /// The proxy URL is not valid.
    InvalidUrl(&'static str),
    /// The proxy URL's scheme is not `http`, `socks5` or `socks5h` (`https://` proxies,
    /// TLS to the proxy itself, are not supported).
    UnsupportedScheme(String),
    /// The HTTP proxy refused `CONNECT` with this status: 407 when it wants credentials
    /// (none in the proxy URL, or wrong ones; some proxies, tinyproxy among them, answer
    /// wrong ones with 401), 403 when it does not allow the destination, 5xx when it could
    /// not reach the server.
    Refused {
        /// The proxy's status code.
        status: u16,
        /// The proxy's reason phrase.
        reason: String,
    },
    /// The SOCKS5 proxy refused the connection with this reply code (RFC 1928 §6:
    /// 1 general failure, 2 not allowed by its rules, 3 network unreachable, 4 host
    /// unreachable, 5 connection refused, 6 TTL expired, 7 command not supported,
    /// 8 address type not supported).
    SocksRefused(u8),
    /// The SOCKS5 proxy accepts none of the offered authentication methods (it wants
    /// credentials that the proxy URL does not have, or a method this client lacks).
    SocksNoAcceptableMethod,
    /// The SOCKS5 proxy refused the username and password of the proxy URL.
    SocksAuthFailed,
    /// The proxy's answer does not follow its protocol.
    Malformed(&'static str),
}

impl ProxyError {
    /// Whether trying again later may succeed: the proxy could not reach the server (HTTP
    /// 5xx; SOCKS general failure, unreachable, refused, TTL expired). Refusals of the
    /// client itself (407, 403, SOCKS rules and credentials) are not.
    pub fn is_transient(&self) -> bool {
        match self {
            ProxyError::Refused { status, .. } => (500..=599).contains(status),
            ProxyError::SocksRefused(code) => matches!(code, 1 | 3 | 4 | 5 | 6),
            _ => false,
        }
    }
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProxyError::InvalidUrl(what) => write!(f, "invalid proxy URL: {what}"),
            ProxyError::UnsupportedScheme(s) => write!(
                f,
                "proxy scheme {s:?} is not supported (use http://, socks5:// or socks5h://)"
            ),
            ProxyError::Refused { status, reason } => {
                write!(f, "the proxy refused the tunnel: HTTP {status} {reason}")?;
                match status {
                    // tinyproxy answers wrong credentials with 401.
                    401 | 407 => {
                        f.write_str(" (it wants credentials: none or wrong ones in the proxy URL)")
                    }
                    403 => f.write_str(" (it does not allow this destination)"),
                    _ => Ok(()),
                }
            }
            ProxyError::SocksRefused(code) => write!(
                f,
                "the SOCKS5 proxy refused the connection: {} (reply {code})",
                socks5::reply_meaning(*code)
            ),
            ProxyError::SocksNoAcceptableMethod => f.write_str(
                "the SOCKS5 proxy accepts none of the offered authentication methods \
                 (does it want a username and password in the proxy URL?)",
            ),
            ProxyError::SocksAuthFailed => {
                f.write_str("the SOCKS5 proxy refused the username and password")
            }
            ProxyError::Malformed(what) => write!(f, "bad answer from the proxy: {what}"),
        }
    }
}

impl std::error::Error for ProxyError {}

/// The proxy protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyKind {
    /// HTTP `CONNECT` (`http://`).
    Http,
    /// SOCKS5 (`socks5://` or `socks5h://`); the proxy resolves the server's name.
    Socks5,
}

/// A parsed proxy URL: `[scheme://][user[:password]@]host[:port][/]`.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// The protocol.
    pub kind: ProxyKind,
    /// The proxy's host, without brackets for IPv6.
    pub host: String,
    /// The proxy's port (default 1080, as curl).
    pub port: u16,
    /// Username and password, percent-decoded.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for ProxyUrl {
    /// Never shows the password.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProxyUrl")
            .field("kind", &self.kind)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .finish()
    }
}

impl ProxyUrl {
    /// Parses a proxy URL. Without a scheme it is an HTTP proxy (as curl takes it).
    pub fn parse(url: &str) -> Result<ProxyUrl, ProxyError> {
        let url = url.trim();
        let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
        let kind = match scheme.to_ascii_lowercase().as_str() {
            "http" => ProxyKind::Http,
            "socks5" | "socks5h" => ProxyKind::Socks5,
            _ => return Err(ProxyError::UnsupportedScheme(scheme.to_owned())),
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        if rest.contains(['/', '?', '#']) {
            return Err(ProxyError::InvalidUrl(
                "a proxy URL has no path, query or fragment",
            ));
        }
        let (userinfo, authority) = match rest.rsplit_once('@') {
            Some((u, a)) => (Some(u), a),
            None => (None, rest),
        };
        let credentials = match userinfo {
            None => None,
            Some(u) => {
                let (user, pass) = u.split_once(':').unwrap_or((u, ""));
                Some((percent_decode(user)?, percent_decode(pass)?))
            }
        };
        let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or(ProxyError::InvalidUrl("unclosed [ in IPv6 address"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(ProxyError::InvalidUrl("invalid IPv6 address"));
            }
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(
                        p.strip_prefix(':')
                            .ok_or(ProxyError::InvalidUrl("invalid port"))?,
                    ),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(ProxyError::InvalidUrl("no host"));
        }
        if !authority.starts_with('[')
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
        {
            return Err(ProxyError::InvalidUrl("invalid character in host"));
        }
        let port = match port {
            None => 1080,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                match p.parse::<u16>() {
                    Ok(n) if n > 0 => n,
                    _ => return Err(ProxyError::InvalidUrl("invalid port")),
                }
            }
            Some(_) => return Err(ProxyError::InvalidUrl("invalid port")),
        };
        Ok(ProxyUrl {
            kind,
            host: host.to_owned(),
            port,
            credentials,
        })
    }
}

/// Decodes `%XX` escapes (userinfo may hold `@`, `:` and the like escaped).
fn percent_decode(s: &str) -> Result<String, ProxyError> {
    let bad = ProxyError::InvalidUrl("invalid percent-encoding in the credentials");
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3).ok_or(bad.clone())?;
            let hex = std::str::from_utf8(hex).map_err(|_| bad.clone())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad.clone())?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| bad)
}

/// The proxy URL the environment gives for a connection to `host` (as curl reads it):
/// `https_proxy`/`HTTPS_PROXY` for `wss://` (`secure`), `http_proxy`/`HTTP_PROXY` for
/// `ws://`, else `all_proxy`/`ALL_PROXY`; none if `no_proxy`/`NO_PROXY` matches the host.
/// Lowercase names win; empty values count as unset. (curl ignores an uppercase
/// `HTTP_PROXY`; a WebSocket client is no CGI program, so it is read here.)
pub fn from_env(secure: bool, host: &str, var: impl Fn(&str) -> Option<String>) -> Option<String> {
    let get = |names: [&str; 2]| {
        names
            .iter()
            .filter_map(|n| var(n))
            .find(|v| !v.trim().is_empty())
    };
    let proxy = if secure {
        get(["https_proxy", "HTTPS_PROXY"])
    } else {
        get(["http_proxy", "HTTP_PROXY"])
    }
    .or_else(|| get(["all_proxy", "ALL_PROXY"]))?;
    match get(["no_proxy", "NO_PROXY"]) {
        Some(list) if no_proxy_matches(&list, host) => None,
        _ => Some(proxy),
    }
}

/// Whether a `no_proxy` list (comma-separated: `*`, host names that also match their
/// subdomains, with or without a leading dot, IP addresses and CIDR blocks) covers `host`.
pub fn no_proxy_matches(list: &str, host: &str) -> bool {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    list.split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let entry = entry.trim_start_matches('.').to_ascii_lowercase();
            let entry = entry.trim_start_matches('[').trim_end_matches(']');
            if let (Some(ip), Some((net, bits))) = (host_ip, entry.split_once('/')) {
                return match (net.parse::<IpAddr>(), bits.parse::<u32>()) {
                    (Ok(net), Ok(bits)) => in_block(ip, net, bits),
                    _ => false,
                };
            }
            host == entry || host.strip_suffix(entry).is_some_and(|s| s.ends_with('.'))
        })
}

/// Whether `ip` is in `net/bits`.
fn in_block(ip: IpAddr, net: IpAddr, bits: u32) -> bool {
    let (ip, net, width) = match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u128::from(u32::from(a)), u128::from(u32::from(b)), 32),
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a), u128::from(b), 128),
        _ => return false,
    };
    if bits > width {
        return false;
    }
    let shift = width - bits;
    shift >= 128 || (ip >> shift) == (net >> shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proxy_urls() {
        let p = ProxyUrl::parse("http://user:p%40ss@proxy.example:3128/").unwrap();
        assert_eq!(p.kind, ProxyKind::Http);
        assert_eq!((p.host.as_str(), p.port), ("proxy.example", 3128));
        assert_eq!(p.credentials, Some(("user".into(), "p@ss".into())));
        assert!(!format!("{p:?}").contains("p@ss"));
        let p = ProxyUrl::parse("socks5h://[::1]:1081").unwrap();
        assert_eq!(
            (p.kind, p.host.as_str(), p.port),
            (ProxyKind::Socks5, "::1", 1081)
        );
        let p = ProxyUrl::parse("127.0.0.1").unwrap();
        assert_eq!(
            (p.kind, p.port, p.credentials),
            (ProxyKind::Http, 1080, None)
        );
        let p = ProxyUrl::parse("SOCKS5://u@h").unwrap();
        assert_eq!(p.credentials, Some(("u".into(), String::new())));
        assert_eq!(
            ProxyUrl::parse("https://h:1"),
            Err(ProxyError::UnsupportedScheme("https".into()))
        );
        for bad in [
            "http://",
            "http://h:0",
            "http://h:x",
            "http://h/p",
            "http://[::1",
            "http://u:%zz@h",
            "http://a b",
        ] {
            assert!(
                matches!(ProxyUrl::parse(bad), Err(ProxyError::InvalidUrl(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn environment_like_curl() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        let e = env(&[
            ("http_proxy", "http://a:1"),
            ("HTTP_PROXY", "http://b:1"),
            ("HTTPS_PROXY", "http://s:1"),
        ]);
        assert_eq!(from_env(false, "x", e).as_deref(), Some("http://a:1"));
        assert_eq!(from_env(true, "x", e).as_deref(), Some("http://s:1"));
        let e = env(&[("ALL_PROXY", "socks5://c:1"), ("http_proxy", "")]);
        assert_eq!(from_env(false, "x", e).as_deref(), Some("socks5://c:1"));
        assert_eq!(from_env(true, "x", e).as_deref(), Some("socks5://c:1"));
        let e = env(&[
            ("all_proxy", "http://c:1"),
            ("NO_PROXY", "example.com, .internal,10.0.0.0/8,::1"),
        ]);
        assert_eq!(from_env(false, "example.com", e), None);
        assert_eq!(from_env(false, "a.example.com", e), None);
        assert_eq!(from_env(false, "b.internal", e), None);
        assert_eq!(from_env(false, "10.1.2.3", e), None);
        assert_eq!(from_env(false, "::1", e), None);
        assert!(from_env(false, "notexample.com", e).is_some());
        assert!(from_env(false, "11.0.0.1", e).is_some());
        assert_eq!(from_env(false, "x", env(&[])), None);
    }

    #[test]
    fn no_proxy_lists() {
        assert!(no_proxy_matches("*", "anything"));
        assert!(no_proxy_matches("localhost,127.0.0.1", "127.0.0.1"));
        assert!(no_proxy_matches("LOCALHOST", "localhost"));
        assert!(no_proxy_matches("fe80::/10", "[fe80::1]"));
        assert!(!no_proxy_matches("fe80::/10", "fe00::1"));
        assert!(no_proxy_matches("0.0.0.0/0", "1.2.3.4"));
        assert!(!no_proxy_matches("1.2.3.4/40", "1.2.3.4"));
        assert!(!no_proxy_matches("", "x"));
    }

    #[test]
    fn transient_refusals() {
        let refused = |status| ProxyError::Refused {
            status,
            reason: String::new(),
        };
        assert!(refused(502).is_transient());
        assert!(!refused(407).is_transient());
        assert!(!refused(403).is_transient());
        assert!(ProxyError::SocksRefused(5).is_transient());
        assert!(!ProxyError::SocksRefused(2).is_transient());
        assert!(!ProxyError::SocksAuthFailed.is_transient());
        assert!(refused(407).to_string().contains("407"));
        assert!(ProxyError::SocksRefused(5)
            .to_string()
            .contains("connection refused"));
    }
}
