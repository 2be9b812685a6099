//! Negotiation of permessage-deflate parameters (RFC 7692 §5 and §7.1), as pure functions
//! over `Sec-WebSocket-Extensions` values.
//!
//! The header grammar is RFC 6455 §9.1: a comma-separated list of extensions, each a name
//! followed by `;`-separated parameters, each a token with an optional `=` value that is a
//! token or a quoted-string. Names compare case-insensitively; whitespace may surround `,`,
//! `;` and `=`. The four parameters of §7.1 may each appear once; the window sizes are
//! decimal integers 8 to 15 without leading zeros (§7.1.2.1, §7.1.2.2).
//!
//! A server skips an offer it cannot accept (unknown or repeated parameters, bad values)
//! and takes the next, since a client lists fallbacks in order of preference (§5.1). A
//! client fails the handshake on any response that its single offer does not allow (§5.2,
//! §7.1).

use crate::deflate::DeflateConfig;
use crate::http::{is_tchar, HandshakeError};

/// The extension's registered name (§7).
const NAME: &str = "permessage-deflate";

/// The agreed parameters for one direction of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Side {
    /// The sender of this direction starts every message with an empty LZ77 window
    /// (§7.1.1), so the receiver may reset its state after each message.
    pub(crate) no_context_takeover: bool,
    /// Base-2 logarithm of the largest LZ77 window the sender of this direction may use,
    /// 8 to 15 (§7.1.2).
    pub(crate) max_window_bits: u8,
}

/// The parameters agreed in the handshake, from this endpoint's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Params {
    /// What we compress with: our outgoing messages.
    pub(crate) compress: Side,
    /// What the peer compresses with: our incoming messages.
    pub(crate) decompress: Side,
}

/// The permessage-deflate parameters present in one offer or response.
#[derive(Debug, Default, PartialEq, Eq)]
struct Present {
    server_no_context_takeover: bool,
    client_no_context_takeover: bool,
    server_max_window_bits: Option<u8>,
    /// `Some(None)`: present without a value (allowed in an offer only).
    client_max_window_bits: Option<Option<u8>>,
}

/// Splits `s` at each `sep` outside quoted-strings.
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, b) in s.bytes().enumerate() {
        if escaped {
            escaped = false;
        } else if quoted && b == b'\\' {
            escaped = true;
        } else if b == b'"' {
            quoted = !quoted;
        } else if b == sep && !quoted {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

/// The non-empty extension elements of header values, in order (RFC 9110 §5.6.1).
fn elements<'a>(values: impl Iterator<Item = &'a str>) -> impl Iterator<Item = &'a str> {
    values
        .flat_map(|v| split_outside_quotes(v, b','))
        .map(trim_ows)
        .filter(|e| !e.is_empty())
}

fn trim_ows(s: &str) -> &str {
    s.trim_matches([' ', '\t'])
}

fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_tchar)
}

/// A parameter value: a token, or a quoted-string whose unescaped content is a token
/// (RFC 6455 §9.1).
fn param_value(raw: &str) -> Result<String, &'static str> {
    let value = match raw.strip_prefix('"') {
        Some(rest) => {
            let inner = rest.strip_suffix('"').ok_or("unterminated quoted value")?;
            let mut out = String::new();
            let mut chars = inner.chars();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => out.push(chars.next().ok_or("bad escape in quoted value")?),
                    '"' => return Err("stray quote in value"),
                    c => out.push(c),
                }
            }
            out
        }
        None => raw.to_owned(),
    };
    if is_token(&value) {
        Ok(value)
    } else {
        Err("parameter value is not a token")
    }
}

/// An extension's parameters: names as sent, values unquoted.
type ParamList<'a> = Vec<(&'a str, Option<String>)>;

/// Parses one extension element into its name and parameters.
fn parse_element(element: &str) -> Result<(&str, ParamList<'_>), &'static str> {
    let mut parts = split_outside_quotes(element, b';')
        .into_iter()
        .map(trim_ows);
    let name = parts.next().unwrap_or_default();
    if !is_token(name) {
        return Err("extension name is not a token");
    }
    let mut params = Vec::new();
    for part in parts {
        let (key, value) = match part.split_once('=') {
            Some((k, v)) => (trim_ows(k), Some(param_value(trim_ows(v))?)),
            None => (part, None),
        };
        if !is_token(key) {
            return Err("parameter name is not a token");
        }
        params.push((key, value));
    }
    Ok((name, params))
}

/// A window size: a decimal integer 8 to 15 without leading zeros (§7.1.2).
fn window_bits(value: &str) -> Option<u8> {
    if value.starts_with('0') || value.len() > 2 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse().ok().filter(|b| (8..=15).contains(b))
}

/// Reads the permessage-deflate parameters, refusing unknown and repeated ones and invalid
/// values (§7.1).
fn deflate_params(params: &[(&str, Option<String>)]) -> Result<Present, &'static str> {
    let mut seen = Present::default();
    let mut names: Vec<String> = Vec::new();
    for (name, value) in params {
        let name = name.to_ascii_lowercase();
        if names.contains(&name) {
            return Err("repeated parameter");
        }
        let bits = || {
            value
                .as_deref()
                .map(|v| window_bits(v).ok_or("window bits must be 8 to 15"))
                .transpose()
        };
        match name.as_str() {
            "server_no_context_takeover" | "client_no_context_takeover" if value.is_some() => {
                return Err("no_context_takeover takes no value");
            }
            "server_no_context_takeover" => seen.server_no_context_takeover = true,
            "client_no_context_takeover" => seen.client_no_context_takeover = true,
            "server_max_window_bits" => {
                seen.server_max_window_bits =
                    Some(bits()?.ok_or("server_max_window_bits needs a value")?);
            }
            "client_max_window_bits" => seen.client_max_window_bits = Some(bits()?),
            _ => return Err("unknown parameter"),
        }
        names.push(name);
    }
    Ok(seen)
}

/// The server's choice among `offers` (each a `Sec-WebSocket-Extensions` value, which may
/// list several extensions): the first acceptable permessage-deflate offer, with the agreed
/// parameters and the response header value, or `None` to answer without the extension.
pub(crate) fn negotiate_server<'a>(
    offers: impl Iterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<(Params, String)> {
    elements(offers).find_map(|element| {
        let (name, params) = parse_element(element).ok()?;
        if !name.eq_ignore_ascii_case(NAME) {
            return None;
        }
        let offer = deflate_params(&params).ok()?;
        Some(accept(&offer, config))
    })
}

/// The smaller of two optional limits, clamped to 8..=15 (an invalid configuration is refused
/// before negotiation; this only keeps the output valid).
fn min_bits(a: Option<u8>, b: Option<u8>) -> Option<u8> {
    let bits = match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    bits.map(|b| b.clamp(8, 15))
}

/// Accepts a valid offer on the server's terms.
fn accept(offer: &Present, config: &DeflateConfig) -> (Params, String) {
    // §7.1.1.1: the server may reset its window even if not asked; if asked, it must.
    let server_nct = offer.server_no_context_takeover || config.server_no_context_takeover;
    // §7.1.1.2: the server may require it in any case; echoing the client's hint binds it.
    let client_nct = offer.client_no_context_takeover || config.client_no_context_takeover;
    // §7.1.2.1: the same or a smaller value than offered; the server may limit itself
    // unasked.
    let server_bits = min_bits(offer.server_max_window_bits, config.server_max_window_bits);
    // §7.1.2.2: only if the client offered the parameter, at most the value it offered.
    let client_bits = offer
        .client_max_window_bits
        .and_then(|offered| min_bits(offered, config.client_max_window_bits));
    let mut response = NAME.to_owned();
    if server_nct {
        response.push_str("; server_no_context_takeover");
    }
    if client_nct {
        response.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = server_bits {
        response.push_str(&format!("; server_max_window_bits={bits}"));
    }
    if let Some(bits) = client_bits {
        response.push_str(&format!("; client_max_window_bits={bits}"));
    }
    let params = Params {
        compress: Side {
            no_context_takeover: server_nct,
            max_window_bits: server_bits.unwrap_or(15),
        },
        decompress: Side {
            no_context_takeover: client_nct,
            max_window_bits: client_bits.unwrap_or(15),
        },
    };
    (params, response)
}

/// The client's offer (one permessage-deflate element) for a valid `config`. It always
/// includes `client_max_window_bits`, so that a server wanting to limit our window can
/// accept instead of declining.
pub(crate) fn client_offer(config: &DeflateConfig) -> String {
    let mut offer = NAME.to_owned();
    if config.server_no_context_takeover {
        offer.push_str("; server_no_context_takeover");
    }
    if config.client_no_context_takeover {
        offer.push_str("; client_no_context_takeover");
    }
    if let Some(bits) = config.server_max_window_bits {
        offer.push_str(&format!("; server_max_window_bits={bits}"));
    }
    match config.client_max_window_bits {
        Some(bits) => offer.push_str(&format!("; client_max_window_bits={bits}")),
        None => offer.push_str("; client_max_window_bits"),
    }
    offer
}

/// Checks the server's `Sec-WebSocket-Extensions` (all its values joined with commas)
/// against the offer [`client_offer`] made from `config`, and returns the agreed
/// parameters.
pub(crate) fn check_client_response(
    value: &str,
    config: &DeflateConfig,
) -> Result<Params, HandshakeError> {
    let invalid = |reason: &'static str| HandshakeError::InvalidExtension {
        value: value.to_owned(),
        reason,
    };
    let mut elements = elements(std::iter::once(value));
    let element = elements.next().ok_or(invalid("empty extension list"))?;
    if elements.next().is_some() {
        return Err(invalid("more than one extension enabled"));
    }
    let (name, params) = parse_element(element).map_err(invalid)?;
    if !name.eq_ignore_ascii_case(NAME) {
        return Err(HandshakeError::UnexpectedExtension(name.to_owned()));
    }
    let got = deflate_params(&params).map_err(invalid)?;
    if config.server_no_context_takeover && !got.server_no_context_takeover {
        return Err(invalid(
            "server_no_context_takeover was requested but not agreed",
        ));
    }
    if let Some(asked) = config.server_max_window_bits {
        match got.server_max_window_bits {
            None => {
                return Err(invalid(
                    "server_max_window_bits was requested but not agreed",
                ))
            }
            Some(bits) if bits > asked => {
                return Err(invalid("server_max_window_bits above the requested value"))
            }
            Some(_) => {}
        }
    }
    let client_bits = match got.client_max_window_bits {
        None => None,
        Some(None) => return Err(invalid("client_max_window_bits without a value")),
        Some(Some(bits)) if config.client_max_window_bits.is_some_and(|max| bits > max) => {
            return Err(invalid("client_max_window_bits above the offered value"));
        }
        Some(Some(bits)) => Some(bits),
    };
    Ok(Params {
        compress: Side {
            no_context_takeover: config.client_no_context_takeover
                || got.client_no_context_takeover,
            max_window_bits: client_bits.or(config.client_max_window_bits).unwrap_or(15),
        },
        decompress: Side {
            no_context_takeover: got.server_no_context_takeover,
            max_window_bits: got.server_max_window_bits.unwrap_or(15),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn side(no_context_takeover: bool, max_window_bits: u8) -> Side {
        Side {
            no_context_takeover,
            max_window_bits,
        }
    }

    fn server(offers: &[&str], config: &DeflateConfig) -> Option<(Params, String)> {
        negotiate_server(offers.iter().copied(), config)
    }

    /// The response to `offer` under the default configuration.
    fn answer(offer: &str) -> Option<String> {
        server(&[offer], &DeflateConfig::default()).map(|(_, r)| r)
    }

    #[test]
    fn server_accepts_a_bare_offer() {
        let (params, response) =
            server(&["permessage-deflate"], &DeflateConfig::default()).unwrap();
        assert_eq!(response, "permessage-deflate");
        assert_eq!(
            params,
            Params {
                compress: side(false, 15),
                decompress: side(false, 15)
            }
        );
    }

    #[test]
    fn server_answers_each_parameter() {
        let cases = [
            (
                "permessage-deflate; client_max_window_bits",
                "permessage-deflate",
            ),
            (
                "permessage-deflate; client_max_window_bits=10",
                "permessage-deflate; client_max_window_bits=10",
            ),
            (
                "permessage-deflate; server_no_context_takeover",
                "permessage-deflate; server_no_context_takeover",
            ),
            (
                "permessage-deflate; client_no_context_takeover",
                "permessage-deflate; client_no_context_takeover",
            ),
            (
                "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
                "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
            ),
            (
                "permessage-deflate; server_max_window_bits=8",
                "permessage-deflate; server_max_window_bits=8",
            ),
            (
                "permessage-deflate; server_max_window_bits=15",
                "permessage-deflate; server_max_window_bits=15",
            ),
        ];
        for (offer, response) in cases {
            assert_eq!(answer(offer).as_deref(), Some(response), "{offer}");
        }
    }

    #[test]
    fn server_agreed_params_follow_the_response() {
        let (params, _) = server(
            &[
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; \
               client_max_window_bits=12; client_no_context_takeover",
            ],
            &DeflateConfig::default(),
        )
        .unwrap();
        assert_eq!(params.compress, side(true, 9));
        assert_eq!(params.decompress, side(true, 12));
    }

    #[test]
    fn autobahn_13_offer_shapes_are_accepted() {
        // Case groups 13.1-13.7: bare, no context takeover, window 8 and 15, and lists of
        // fallbacks.
        let offers = [
            "permessage-deflate; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=8; client_max_window_bits",
            "permessage-deflate; server_max_window_bits=15; client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8; \
             client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=15; \
             client_max_window_bits",
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=8; \
             client_max_window_bits, permessage-deflate; server_no_context_takeover; \
             client_max_window_bits, permessage-deflate; client_max_window_bits",
        ];
        for offer in offers {
            let (params, response) = server(&[offer], &DeflateConfig::default()).unwrap();
            let first = offer.split(',').next().unwrap();
            assert_eq!(
                params.compress.no_context_takeover,
                first.contains("server_no_context_takeover"),
                "{offer}"
            );
            let bits = if first.contains("=8") { 8 } else { 15 };
            assert_eq!(params.compress.max_window_bits, bits, "{offer}");
            assert!(!response.contains("client_max_window_bits"), "{response}");
        }
    }

    #[test]
    fn server_declines_invalid_offers() {
        let bad = [
            "permessage-deflate; server_max_window_bits=7",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; server_max_window_bits=09",
            "permessage-deflate; server_max_window_bits=+9",
            "permessage-deflate; server_max_window_bits=",
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; client_max_window_bits=0",
            "permessage-deflate; client_max_window_bits=1a",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; client_no_context_takeover=\"\"",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
            "permessage-deflate; Server_Max_Window_Bits=10; server_max_window_bits=10",
            "permessage-deflate; mystery",
            "permessage-deflate; max_window_bits=10",
            "permessage-deflate; server_max_window_bits=\"10",
            "permessage-deflate; server_max_window_bits=\"1\"0\"",
            "permessage-deflate;",
            "permessage-deflate; ; server_no_context_takeover",
            "permessage-deflate; =10",
            "x-webkit-deflate-frame",
            "deflate-frame; no_context_takeover",
            "perMessage deflate",
        ];
        for offer in bad {
            assert_eq!(answer(offer), None, "{offer}");
        }
    }

    #[test]
    fn server_takes_the_first_acceptable_offer() {
        let offers = [
            "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; mystery, permessage-deflate; server_max_window_bits=10",
            "permessage-deflate; client_no_context_takeover",
        ];
        let (params, response) = server(&offers, &DeflateConfig::default()).unwrap();
        assert_eq!(response, "permessage-deflate; server_max_window_bits=10");
        assert_eq!(params.compress, side(false, 10));
        assert_eq!(server(&["", " , ", "foo"], &DeflateConfig::default()), None);
        assert_eq!(server(&[], &DeflateConfig::default()), None);
    }

    #[test]
    fn parsing_is_case_insensitive_with_whitespace_and_quotes() {
        let offers = [
            "PerMessage-Deflate;Server_Max_Window_Bits=\"10\";CLIENT_MAX_WINDOW_BITS",
            "permessage-deflate ;  server_max_window_bits = 10 ;\tclient_max_window_bits",
            "permessage-deflate; server_max_window_bits=\"1\\0\"",
        ];
        for offer in offers {
            assert_eq!(
                answer(offer).as_deref(),
                Some("permessage-deflate; server_max_window_bits=10"),
                "{offer}"
            );
        }
        // A comma inside a quoted value does not split the list.
        assert_eq!(
            answer("foo; a=\"x,y\", permessage-deflate").as_deref(),
            Some(NAME)
        );
    }

    #[test]
    fn server_config_is_imposed() {
        let config = DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(Some(12))
            .client_max_window_bits(Some(11));
        let (params, response) = server(&["permessage-deflate"], &config).unwrap();
        // client_max_window_bits only goes back to a client that offered it.
        assert_eq!(
            response,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=12"
        );
        assert_eq!(params.compress, side(true, 12));
        assert_eq!(params.decompress, side(true, 15));
        let (params, response) = server(
            &["permessage-deflate; server_max_window_bits=10; client_max_window_bits"],
            &config,
        )
        .unwrap();
        assert!(response.ends_with("server_max_window_bits=10; client_max_window_bits=11"));
        assert_eq!(params.compress, side(true, 10));
        assert_eq!(params.decompress, side(true, 11));
        let (_, response) = server(
            &["permessage-deflate; server_max_window_bits=13; client_max_window_bits=9"],
            &config,
        )
        .unwrap();
        assert!(response.ends_with("server_max_window_bits=12; client_max_window_bits=9"));
    }

    #[test]
    fn client_offers_its_config() {
        assert_eq!(
            client_offer(&DeflateConfig::default()),
            "permessage-deflate; client_max_window_bits"
        );
        let config = DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(Some(10))
            .client_max_window_bits(Some(9));
        let offer = client_offer(&config);
        assert_eq!(
            offer,
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=10; client_max_window_bits=9"
        );
        // Our own server accepts our own offer as it stands.
        let (_, response) = server(&[&offer], &DeflateConfig::default()).unwrap();
        assert_eq!(response, offer);
    }

    fn client(value: &str, config: &DeflateConfig) -> Result<Params, HandshakeError> {
        check_client_response(value, config)
    }

    #[test]
    fn client_accepts_what_its_offer_allows() {
        let default = DeflateConfig::default();
        let p = client("permessage-deflate", &default).unwrap();
        assert_eq!(
            (p.compress, p.decompress),
            (side(false, 15), side(false, 15))
        );
        // The server may impose any parameter, and lower windows freely.
        let p = client(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; \
             server_max_window_bits=9; client_max_window_bits=8",
            &default,
        )
        .unwrap();
        assert_eq!((p.compress, p.decompress), (side(true, 8), side(true, 9)));
        let p = client(
            "Permessage-Deflate ; Client_Max_Window_Bits=\"10\"",
            &default,
        )
        .unwrap();
        assert_eq!(p.compress, side(false, 10));
        // What we asked for is kept.
        let asked = DeflateConfig::default()
            .server_no_context_takeover(true)
            .client_no_context_takeover(true)
            .server_max_window_bits(Some(10))
            .client_max_window_bits(Some(11));
        let p = client(
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=9",
            &asked,
        )
        .unwrap();
        assert_eq!((p.compress, p.decompress), (side(true, 11), side(true, 9)));
    }

    #[test]
    fn client_refuses_what_its_offer_does_not_allow() {
        let default = DeflateConfig::default();
        let asked = DeflateConfig::default()
            .server_no_context_takeover(true)
            .server_max_window_bits(Some(10))
            .client_max_window_bits(Some(11));
        let bad = [
            ("permessage-deflate; mystery", &default),
            (
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                &default,
            ),
            ("permessage-deflate; client_max_window_bits", &default),
            ("permessage-deflate; server_max_window_bits=16", &default),
            ("permessage-deflate; server_max_window_bits=08", &default),
            ("permessage-deflate; server_max_window_bits", &default),
            (
                "permessage-deflate; client_no_context_takeover=true",
                &default,
            ),
            ("permessage-deflate, permessage-deflate", &default),
            ("permessage-deflate; x=\"1", &default),
            // Missing or larger than what was asked.
            ("permessage-deflate; server_max_window_bits=10", &asked),
            ("permessage-deflate; server_no_context_takeover", &asked),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=11",
                &asked,
            ),
            (
                "permessage-deflate; server_no_context_takeover; server_max_window_bits=10; \
                 client_max_window_bits=12",
                &asked,
            ),
        ];
        for (value, config) in bad {
            assert!(
                matches!(
                    client(value, config),
                    Err(HandshakeError::InvalidExtension { .. })
                ),
                "{value}: {:?}",
                client(value, config)
            );
        }
        for value in ["x-webkit-deflate-frame", "foo; a=1"] {
            assert!(
                matches!(
                    client(value, &default),
                    Err(HandshakeError::UnexpectedExtension(_))
                ),
                "{value}"
            );
        }
        assert!(matches!(
            client("permessage-deflate, foo", &default),
            Err(HandshakeError::InvalidExtension { .. })
        ));
    }

    #[test]
    fn window_bits_are_decimal_8_to_15_without_leading_zeros() {
        for (text, bits) in [("8", Some(8)), ("15", Some(15)), ("12", Some(12))] {
            assert_eq!(window_bits(text), bits);
        }
        for text in [
            "7",
            "16",
            "0",
            "08",
            "010",
            "",
            "1 0",
            "-9",
            "9.0",
            "999999999999",
        ] {
            assert_eq!(window_bits(text), None, "{text}");
        }
    }
}
