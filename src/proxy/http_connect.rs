//! HTTP `CONNECT` (RFC 9110 §9.3.6): the request that asks an HTTP proxy for a tunnel,
//! with Basic credentials (RFC 7617) when the proxy URL has them, and the check of the
//! proxy's answer head. Pure: `dial.rs` writes the request and reads the head.

use base64::Engine;

use super::ProxyError;
use crate::http;

/// The largest answer head read from a proxy.
pub const MAX_HEAD: usize = 8 << 10;

/// Header lines allowed in the answer head.
const MAX_HEADERS: usize = 64;

/// `host:port` as a request target (IPv6 in brackets).
fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The `CONNECT` request head for a tunnel to `host:port` (a host checked by the URL
/// parser: no spaces or line breaks).
pub fn request(host: &str, port: u16, credentials: Option<(&str, &str)>) -> Vec<u8> {
    let target = authority(host, port);
    let mut head = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some((user, pass)) = credentials {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
        head.push_str(&format!("Proxy-Authorization: Basic {token}\r\n"));
    }
    head.push_str("\r\n");
    head.into_bytes()
}

/// Checks the proxy's answer head (through its blank line): any 2xx opens the tunnel,
/// anything else is [`ProxyError::Refused`].
pub fn check_response(head: &[u8]) -> Result<(), ProxyError> {
    let parsed = http::parse_head(head, MAX_HEADERS)
        .map_err(|_| ProxyError::Malformed("not an HTTP answer head"))?;
    let mut parts = parsed.start_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    let status = parts.next().unwrap_or_default();
    let reason = parts.next().unwrap_or_default();
    if http::parse_version(version).is_none() {
        return Err(ProxyError::Malformed(
            "invalid HTTP version in the status line",
        ));
    }
    let status: u16 = match status.as_bytes() {
        [a, b, c] if [a, b, c].iter().all(|d| d.is_ascii_digit()) => status
            .parse()
            .map_err(|_| ProxyError::Malformed("invalid status code"))?,
        _ => return Err(ProxyError::Malformed("invalid status code")),
    };
    if (200..=299).contains(&status) {
        Ok(())
    } else {
        Err(ProxyError::Refused {
            status,
            reason: reason.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests() {
        let r = request("example.com", 443, None);
        assert_eq!(
            r,
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        );
        let r = String::from_utf8(request("::1", 80, Some(("Aladdin", "open sesame")))).unwrap();
        assert!(r.starts_with("CONNECT [::1]:80 HTTP/1.1\r\n"));
        assert!(r.contains("Proxy-Authorization: Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==\r\n"));
    }

    #[test]
    fn answers() {
        assert_eq!(
            check_response(b"HTTP/1.1 200 Connection established\r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            check_response(b"HTTP/1.0 200 OK\r\nProxy-agent: x\r\n\r\n"),
            Ok(())
        );
        assert_eq!(
            check_response(
                b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"
            ),
            Err(ProxyError::Refused {
                status: 407,
                reason: "Proxy Authentication Required".into()
            })
        );
        assert!(matches!(
            check_response(b"HTTP/1.1 403 Forbidden\r\n\r\n"),
            Err(ProxyError::Refused { status: 403, .. })
        ));
        for bad in [
            &b"SSH-2.0-x\r\n\r\n"[..],
            b"HTTP/1.1 2000 x\r\n\r\n",
            b"HTTP/1.1 20 x\r\n\r\n",
            b"\xff\r\n\r\n",
        ] {
            assert!(
                matches!(check_response(bad), Err(ProxyError::Malformed(_))),
                "{bad:?}"
            );
        }
    }
}
