//! permessage-deflate (RFC 7692): compression of message payloads with DEFLATE
//! (RFC 1951), negotiated in the opening handshake.
//!
//! [`DeflateConfig`] says what this endpoint offers (client) or accepts and imposes (server).
//! `negotiate` turns `Sec-WebSocket-Extensions` values into the agreed parameters (§7.1) as
//! pure functions; `codec` compresses and decompresses one message at a time (§7.2), with
//! the sync-flush tail `00 00 ff ff` removed on the wire (§7.2.1) and put back before
//! inflating (§7.2.2).
//!
//! The backend is `miniz_oxide`, whose compressor always uses a 32 KiB window (15 bits). A
//! peer may ask for a smaller window for our compressor (`*_max_window_bits` below 15); we
//! accept, and then compress only messages that fit in that window, starting each from an
//! empty window, so that no back-reference can reach further: any other message is sent
//! uncompressed, which §6 allows for every message. Our decompressor always has a 32 KiB
//! window, which decodes whatever window the peer uses (§7.1.2).

mod codec;
mod negotiate;

pub(crate) use codec::{Compressor, Decompressor, InflateError};
pub(crate) use negotiate::{check_client_response, client_offer, negotiate_server, Params};

use crate::state::Role;

/// The permessage-deflate parameters agreed in the opening handshake (RFC 7692 §7.1), in
/// the RFC's terms: `server_*` for what the server compresses, `client_*` for what the
/// client compresses, whichever end this is. Window bits are always given (15 when the
/// handshake set no limit). Read them with
/// [`WebSocket::deflate`](crate::WebSocket::deflate) and the split halves' `deflate`.
///
/// ```
/// let params = stdws::DeflateParams::default();
/// assert_eq!((params.server_max_window_bits, params.client_max_window_bits), (15, 15));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateParams {
    /// The server compresses each message on its own (an empty window every message).
    pub server_no_context_takeover: bool,
    /// The client compresses each message on its own.
    pub client_no_context_takeover: bool,
    /// The largest window the server compresses with, 8 to 15 bits.
    pub server_max_window_bits: u8,
    /// The largest window the client compresses with, 8 to 15 bits.
    pub client_max_window_bits: u8,
}

/// What the extension's defaults are: context takeover both ways, 32 KiB windows.
impl Default for DeflateParams {
    fn default() -> Self {
        DeflateParams {
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
            client_max_window_bits: 15,
        }
    }
}

impl DeflateParams {
    /// The parameters `agreed` by the endpoint in `role`, in the RFC's terms.
    pub(crate) fn from_agreed(agreed: Params, role: Role) -> DeflateParams {
        let (server, client) = match role {
            Role::Server => (agreed.compress, agreed.decompress),
            Role::Client => (agreed.decompress, agreed.compress),
        };
        DeflateParams {
            server_no_context_takeover: server.no_context_takeover,
            client_no_context_takeover: client.no_context_takeover,
            server_max_window_bits: server.max_window_bits,
            client_max_window_bits: client.max_window_bits,
        }
    }
}

/// The permessage-deflate settings of an endpoint (RFC 7692), set with
/// [`Config::deflate`](crate::Config::deflate).
///
/// The four negotiation parameters mean what this endpoint asks for as a client, and what it
/// imposes as a server; a server also accepts whatever a client asks for within RFC 7692
/// (a client's request is never a reason to refuse compression):
///
/// | field | as a client | as a server |
/// |---|---|---|
/// | `server_no_context_takeover` | ask the server to compress each message on its own | compress each message on its own, even if not asked |
/// | `client_no_context_takeover` | compress each message on its own (and say so) | require the client to compress each message on its own |
/// | `server_max_window_bits` | ask the server to use at most this window | use at most this window |
/// | `client_max_window_bits` | use at most this window (and say so) | ask a client that supports it to use at most this window |
///
/// "On its own" (no context takeover) costs compression ratio on streams of similar
/// messages; a window below 15 bits for our own compressor means only messages of at most
/// 2^bits bytes are compressed (see the module documentation). Our decompressor always
/// keeps a 32 KiB window, so limiting the peer's window saves no memory here; it is offered
/// for peers and tests that want it. Window bits are 8 to 15; some zlib versions refuse 8.
///
/// ```
/// # #[cfg(feature = "deflate")] {
/// use stdws::{Config, DeflateConfig};
///
/// let config = Config::default().deflate(Some(DeflateConfig::default().compression_level(1)));
/// assert_eq!(config.deflate.unwrap().threshold, 64);
/// # }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeflateConfig {
    /// Messages shorter than this many bytes are sent uncompressed. Default 64: below
    /// that, the deflate block overhead eats most of the gain, and the saving is small next to
    /// the frame and TCP/IP headers, while each compressed message still costs a compressor
    /// call. Any message that would not get smaller is sent uncompressed too.
    pub threshold: usize,
    /// DEFLATE effort, 0 to 10 (miniz levels; above 10 counts as 10). 0 never compresses
    /// (but still negotiates the extension, so compressed messages from the peer are
    /// read). Default 2: on JSON-like text it compresses about 10% better than 1 at
    /// about the same speed, while 6 is 3-10 times slower for a few percent.
    pub compression_level: u8,
    /// See the table above. Default `false`.
    pub server_no_context_takeover: bool,
    /// See the table above. Default `false`.
    pub client_no_context_takeover: bool,
    /// See the table above; 8 to 15, `None` for no limit. Default `None`.
    pub server_max_window_bits: Option<u8>,
    /// See the table above; 8 to 15, `None` for no limit. Default `None`.
    pub client_max_window_bits: Option<u8>,
}

impl Default for DeflateConfig {
    fn default() -> Self {
        DeflateConfig {
            threshold: 64,
            compression_level: 2,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: None,
            client_max_window_bits: None,
        }
    }
}

impl DeflateConfig {
    /// Sets [`threshold`](Self::threshold).
    pub fn threshold(mut self, bytes: usize) -> Self {
        self.threshold = bytes;
        self
    }

    /// Sets [`compression_level`](Self::compression_level).
    pub fn compression_level(mut self, level: u8) -> Self {
        self.compression_level = level;
        self
    }

    /// Sets [`server_no_context_takeover`](Self::server_no_context_takeover).
    pub fn server_no_context_takeover(mut self, on: bool) -> Self {
        self.server_no_context_takeover = on;
        self
    }

    /// Sets [`client_no_context_takeover`](Self::client_no_context_takeover).
    pub fn client_no_context_takeover(mut self, on: bool) -> Self {
        self.client_no_context_takeover = on;
        self
    }

    /// Sets [`server_max_window_bits`](Self::server_max_window_bits).
    pub fn server_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.server_max_window_bits = bits;
        self
    }

    /// Sets [`client_max_window_bits`](Self::client_max_window_bits).
    pub fn client_max_window_bits(mut self, bits: Option<u8>) -> Self {
        self.client_max_window_bits = bits;
        self
    }

    /// Checks the window sizes (RFC 7692 §7.1.2: 8 to 15).
    pub(crate) fn check(&self) -> Result<(), &'static str> {
        let ok = |bits: Option<u8>| bits.map_or(true, |b| (8..=15).contains(&b));
        if ok(self.server_max_window_bits) && ok(self.client_max_window_bits) {
            Ok(())
        } else {
            Err("permessage-deflate window bits must be 8 to 15")
        }
    }
}
