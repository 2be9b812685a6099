//! `ws://` and `wss://` URL parsing (RFC 6455 §3).
//!
//! `ws[s]://host[:port][/path][?query]` with default ports 80 and 443, IPv6 literals in
//! brackets, and no fragment (§3: "Fragment identifiers ... MUST NOT be used").
//!
//! A URL that does not fit is refused with this file's own [`UrlError`]; `error.rs` wraps it
//! in `Error::Url` and re-exports it, so its public path stays `stdws::UrlError`.

use std::fmt;

/// Why a WebSocket URL was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum UrlError {
    /// The scheme is not `ws` or `wss`.
    UnsupportedScheme(String),
    /// The URL has no host.
    MissingHost,
    /// The port is not a number between 1 and 65535.
    InvalidPort,
    /// The URL contains characters that cannot appear in a request line (spaces, controls,
    /// a fragment) or is otherwise malformed.
    Malformed(&'static str),
    /// `wss://` needs TLS, which [`connect`](crate::connect) does not provide: use
    /// `stdws::tls::connect` (feature `rustls`), or open a TLS stream yourself and pass it
    /// to [`client`](crate::client).
    TlsRequired,
    /// Name resolution gave no address.
    NoAddress,
}

impl fmt::Display for UrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlError::UnsupportedScheme(s) => write!(f, "scheme {s:?} is not ws or wss"),
            UrlError::MissingHost => f.write_str("no host"),
            UrlError::InvalidPort => f.write_str("invalid port"),
            UrlError::Malformed(what) => f.write_str(what),
            #[cfg(not(feature = "rustls"))]
            UrlError::TlsRequired => f.write_str(
                "wss:// needs TLS: open a TLS stream to the host yourself and pass it to \
                 stdws::client(url, stream), or enable stdws's `rustls` feature",
            ),
            #[cfg(feature = "rustls")]
            UrlError::TlsRequired => f.write_str(
                "wss:// needs TLS, which stdws::connect does not do: use stdws::tls::connect \
                 (or ClientBuilder::connect_tls)",
            ),
            UrlError::NoAddress => f.write_str("host name resolved to no address"),
        }
    }
}

impl std::error::Error for UrlError {}

/// A parsed WebSocket URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsUrl {
    /// `true` for `wss://`.
    pub secure: bool,
    /// The host, without brackets for IPv6 literals.
    pub host: String,
    /// The port (explicit or the scheme's default).
    pub port: u16,
    /// Path and query for the request line, starting with `/`.
    pub resource: String,
    /// Value for the `Host` header: the host (bracketed if IPv6) and the port if not the
    /// default.
    pub host_header: String,
}

impl WsUrl {
    /// Parses `url`.
    pub fn parse(url: &str) -> Result<WsUrl, UrlError> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or(UrlError::Malformed("expected ws://host/ or wss://host/"))?;
        let secure = if scheme.eq_ignore_ascii_case("ws") {
            false
        } else if scheme.eq_ignore_ascii_case("wss") {
            true
        } else {
            return Err(UrlError::UnsupportedScheme(scheme.to_owned()));
        };
        let default_port = if secure { 443 } else { 80 };
        if rest.contains('#') {
            return Err(UrlError::Malformed(
                "fragments (#) are not allowed in WebSocket URLs",
            ));
        }
        let split = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, resource) = rest.split_at(split);
        if authority.contains('@') {
            return Err(UrlError::Malformed(
                "user information in the URL is not supported; send an Authorization header",
            ));
        }
        let (host, port_str) = if let Some(v6) = authority.strip_prefix('[') {
            let (host, after) = v6
                .split_once(']')
                .ok_or(UrlError::Malformed("unclosed [ in IPv6 address"))?;
            if host.parse::<std::net::Ipv6Addr>().is_err() {
                return Err(UrlError::Malformed("invalid IPv6 address"));
            }
            match after {
                "" => (host, None),
                p => (
                    host,
                    Some(p.strip_prefix(':').ok_or(UrlError::InvalidPort)?),
                ),
            }
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            }
        };
        if host.is_empty() {
            return Err(UrlError::MissingHost);
        }
        let is_v6 = authority.starts_with('[');
        if !is_v6
            && !host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%".contains(&b))
        {
            return Err(UrlError::Malformed("invalid character in host"));
        }
        let port = match port_str {
            None | Some("") => default_port,
            Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => match p.parse::<u16>() {
                Ok(0) | Err(_) => return Err(UrlError::InvalidPort),
                Ok(n) => n,
            },
            Some(_) => return Err(UrlError::InvalidPort),
        };
        let mut resource = encode_resource(resource)?;
        if !resource.starts_with('/') {
            resource.insert(0, '/');
        }
        let bracketed = if is_v6 {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        let host_header = if port == default_port {
            bracketed
        } else {
            format!("{bracketed}:{port}")
        };
        Ok(WsUrl {
            secure,
            host: host.to_owned(),
            port,
            resource,
            host_header,
        })
    }
}

/// Percent-encodes non-ASCII bytes of the path and query; refuses spaces and control
/// characters, which cannot appear in a request line.
fn encode_resource(resource: &str) -> Result<String, UrlError> {
    let mut out = String::with_capacity(resource.len());
    for &b in resource.as_bytes() {
        match b {
            0..=0x20 | 0x7f => {
                return Err(UrlError::Malformed(
                    "spaces and control characters must be percent-encoded",
                ))
            }
            0x80.. => out.push_str(&format!("%{b:02X}")),
            _ => out.push(char::from(b)),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(u: &str) -> WsUrl {
        WsUrl::parse(u).unwrap()
    }

    #[test]
    fn parses_hosts_ports_and_resources() {
        let u = parse("ws://example.com/chat?room=1");
        assert_eq!(
            (u.host.as_str(), u.port, u.resource.as_str()),
            ("example.com", 80, "/chat?room=1")
        );
        assert_eq!(u.host_header, "example.com");
        let u = parse("wss://example.com");
        assert_eq!((u.secure, u.port, u.resource.as_str()), (true, 443, "/"));
        let u = parse("ws://[::1]:9001/");
        assert_eq!((u.host.as_str(), u.port), ("::1", 9001));
        assert_eq!(u.host_header, "[::1]:9001");
        let u = parse("WS://Host:80?x=1");
        assert_eq!(
            (u.port, u.resource.as_str(), u.host_header.as_str()),
            (80, "/?x=1", "Host")
        );
        let u = parse("ws://127.0.0.1:8080/a/ü");
        assert_eq!(u.resource, "/a/%C3%BC");
        assert_eq!(u.host_header, "127.0.0.1:8080");
        let u = parse("ws://[::1]/x");
        assert_eq!(u.host_header, "[::1]");
    }

    #[test]
    fn refuses_bad_urls() {
        assert_eq!(
            WsUrl::parse("http://x/"),
            Err(UrlError::UnsupportedScheme("http".into()))
        );
        assert_eq!(WsUrl::parse("ws:///x"), Err(UrlError::MissingHost));
        assert_eq!(WsUrl::parse("ws://x:0/"), Err(UrlError::InvalidPort));
        assert_eq!(WsUrl::parse("ws://x:65536/"), Err(UrlError::InvalidPort));
        assert_eq!(WsUrl::parse("ws://x:ab/"), Err(UrlError::InvalidPort));
        assert!(WsUrl::parse("ws://x/#frag").is_err());
        assert!(WsUrl::parse("ws://x/a b").is_err());
        assert!(WsUrl::parse("ws://u:p@x/").is_err());
        assert!(WsUrl::parse("ws://[::1/").is_err());
        assert!(WsUrl::parse("ws://[zz]/").is_err());
        assert!(WsUrl::parse("example.com").is_err());
    }
}
