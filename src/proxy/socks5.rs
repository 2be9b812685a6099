//! SOCKS5 (RFC 1928) with no authentication or username/password (RFC 1929): the
//! client's messages and the checks of the proxy's replies. The server's name goes to the
//! proxy as it is (address type 3), so the proxy resolves it. Pure: `dial.rs` does the
//! I/O, in this order: [`greeting`], read 2 bytes for [`check_method`], then if asked
//! [`auth_request`] and 2 bytes for [`check_auth`]; [`connect_request`], read 5 bytes,
//! [`reply_rest`] more, and [`check_reply`].

use std::net::IpAddr;

use super::ProxyError;

/// The authentication method the proxy chose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// No authentication.
    None,
    /// Username and password (RFC 1929).
    Password,
}

/// The client's greeting: no authentication, plus username/password if there are
/// credentials.
pub fn greeting(with_password: bool) -> Vec<u8> {
    if with_password {
        vec![5, 2, 0, 2]
    } else {
        vec![5, 1, 0]
    }
}

/// Checks the proxy's method choice.
pub fn check_method(reply: [u8; 2], with_password: bool) -> Result<Method, ProxyError> {
    match reply {
        [5, 0] => Ok(Method::None),
        [5, 2] if with_password => Ok(Method::Password),
        [5, _] => Err(ProxyError::SocksNoAcceptableMethod),
        _ => Err(ProxyError::Malformed("not a SOCKS5 method reply")),
    }
}

/// The username/password request (each 1 to 255 bytes).
pub fn auth_request(user: &str, pass: &str) -> Result<Vec<u8>, ProxyError> {
    let (u, p) = (user.as_bytes(), pass.as_bytes());
    let (Ok(ulen), Ok(plen)) = (u8::try_from(u.len()), u8::try_from(p.len())) else {
        return Err(ProxyError::InvalidUrl(
            "SOCKS5 username and password are at most 255 bytes",
        ));
    };
    if ulen == 0 || plen == 0 {
        return Err(ProxyError::InvalidUrl(
            "SOCKS5 needs a username and a password",
        ));
    }
    let mut out = vec![1, ulen];
    out.extend_from_slice(u);
    out.push(plen);
    out.extend_from_slice(p);
    Ok(out)
}

/// Checks the answer to [`auth_request`].
pub fn check_auth(reply: [u8; 2]) -> Result<(), ProxyError> {
    match reply {
        [1, 0] => Ok(()),
        [1, _] => Err(ProxyError::SocksAuthFailed),
        _ => Err(ProxyError::Malformed("not a SOCKS5 authentication reply")),
    }
}

/// The CONNECT request for `host:port`: an IP literal as an address, a name as a name
/// (resolved by the proxy).
pub fn connect_request(host: &str, port: u16) -> Result<Vec<u8>, ProxyError> {
    let mut out = vec![5, 1, 0];
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => {
            out.push(1);
            out.extend_from_slice(&v4.octets());
        }
        Ok(IpAddr::V6(v6)) => {
            out.push(4);
            out.extend_from_slice(&v6.octets());
        }
        Err(_) => {
            let len = u8::try_from(host.len())
                .map_err(|_| ProxyError::InvalidUrl("host name longer than 255 bytes"))?;
            out.push(3);
            out.push(len);
            out.extend_from_slice(host.as_bytes());
        }
    }
    out.extend_from_slice(&port.to_be_bytes());
    Ok(out)
}

/// Given the first 5 bytes of the reply, how many bytes of it are still to come (the rest
/// of the bound address and the port).
pub fn reply_rest(head: [u8; 5]) -> Result<usize, ProxyError> {
    if head[0] != 5 {
        return Err(ProxyError::Malformed("not a SOCKS5 reply"));
    }
    match head[3] {
        1 => Ok(4 - 1 + 2),
        4 => Ok(16 - 1 + 2),
        3 => Ok(usize::from(head[4]) + 2),
        _ => Err(ProxyError::Malformed(
            "unknown address type in the SOCKS5 reply",
        )),
    }
}

/// Checks the reply code (after [`reply_rest`] accepted the reply's shape).
pub fn check_reply(head: [u8; 5]) -> Result<(), ProxyError> {
    match head[1] {
        0 => Ok(()),
        code => Err(ProxyError::SocksRefused(code)),
    }
}

/// What a SOCKS5 reply code means (RFC 1928 §6).
pub fn reply_meaning(code: u8) -> &'static str {
    match code {
        1 => "general failure",
        2 => "connection not allowed by the proxy's rules",
        3 => "network unreachable",
        4 => "host unreachable",
        5 => "connection refused",
        6 => "TTL expired",
        7 => "command not supported",
        8 => "address type not supported",
        _ => "unknown reply code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages() {
        assert_eq!(greeting(false), [5, 1, 0]);
        assert_eq!(greeting(true), [5, 2, 0, 2]);
        assert_eq!(
            auth_request("u", "pw").unwrap(),
            [1, 1, b'u', 2, b'p', b'w']
        );
        assert!(auth_request("", "p").is_err());
        assert!(auth_request(&"u".repeat(256), "p").is_err());
        assert_eq!(
            connect_request("127.0.0.1", 0x1F90).unwrap(),
            [5, 1, 0, 1, 127, 0, 0, 1, 0x1F, 0x90]
        );
        let v6 = connect_request("::1", 80).unwrap();
        assert_eq!((v6[3], v6.len()), (4, 4 + 16 + 2));
        assert_eq!(
            connect_request("ab.c", 80).unwrap(),
            [5, 1, 0, 3, 4, b'a', b'b', b'.', b'c', 0, 80]
        );
        assert!(connect_request(&"a".repeat(256), 80).is_err());
    }

    #[test]
    fn replies() {
        assert_eq!(check_method([5, 0], false), Ok(Method::None));
        assert_eq!(check_method([5, 2], true), Ok(Method::Password));
        assert_eq!(
            check_method([5, 2], false),
            Err(ProxyError::SocksNoAcceptableMethod)
        );
        assert_eq!(
            check_method([5, 0xFF], true),
            Err(ProxyError::SocksNoAcceptableMethod)
        );
        assert!(matches!(
            check_method([4, 0], true),
            Err(ProxyError::Malformed(_))
        ));
        assert_eq!(check_auth([1, 0]), Ok(()));
        assert_eq!(check_auth([1, 1]), Err(ProxyError::SocksAuthFailed));
        assert!(matches!(check_auth([5, 0]), Err(ProxyError::Malformed(_))));
        assert_eq!(reply_rest([5, 0, 0, 1, 127]), Ok(5));
        assert_eq!(reply_rest([5, 0, 0, 4, 0]), Ok(17));
        assert_eq!(reply_rest([5, 0, 0, 3, 9]), Ok(11));
        assert!(reply_rest([5, 0, 0, 9, 0]).is_err());
        assert!(reply_rest([0x48, 0x54, 0x54, 0x50, 0x2f]).is_err());
        assert_eq!(check_reply([5, 0, 0, 1, 0]), Ok(()));
        assert_eq!(
            check_reply([5, 5, 0, 1, 0]),
            Err(ProxyError::SocksRefused(5))
        );
        assert_eq!(
            reply_meaning(2),
            "connection not allowed by the proxy's rules"
        );
    }
}
