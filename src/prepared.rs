//! Prepared messages, for broadcast (RFC 6455 §5.2, §5.3): a text or binary message framed
//! once and queued on any number of connections without being framed or copied again.
//!
//! A server's frames are not masked, so the bytes of a frame are the same for every client:
//! [`PreparedMessage`] holds them behind an `Arc`, and each server connection queues a
//! reference to them. A client must mask every frame with a fresh key (§5.3), so a client
//! connection frames the payload itself. The model is gorilla/websocket's `PreparedMessage`.

use std::sync::Arc;

use crate::frame::{FrameHeader, OpCode, MAX_HEADER_LEN};
use crate::message::Message;

/// A text or binary message framed once, to be sent to many connections: each
/// [`WebSocket::send_prepared`](crate::WebSocket::send_prepared),
/// [`WriteHalf::send_prepared`](crate::WriteHalf::send_prepared) or
/// [`Connection::send_prepared`](crate::proto::Connection::send_prepared) on a server
/// connection queues a reference to the same bytes (one frame, unmasked), so a broadcast to
/// N clients frames the message once and copies its payload into no connection's buffer.
/// Cloning is cheap (an `Arc`).
///
/// On a client connection the payload is framed and masked as for any message. With
/// permessage-deflate negotiated, a prepared message goes out uncompressed (RSV1 clear),
/// which RFC 7692 §6 allows for any message: compressing it would be per connection (each
/// has its own compression context), which is what preparing avoids. It is sent as one
/// frame whatever [`Config::fragment_size`](crate::Config) says.
///
/// ```
/// use stdws::{Message, PreparedMessage};
///
/// let tick = PreparedMessage::text("price 101.5");
/// assert_eq!(tick.payload(), b"price 101.5");
/// assert_eq!(tick.to_message(), Message::text("price 101.5"));
/// // for subscriber in &subscribers { subscriber.send_prepared(&tick)?; }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedMessage {
    /// The whole server frame: header, then payload.
    frame: Arc<[u8]>,
    header_len: usize,
    text: bool,
}

impl PreparedMessage {
    /// A text message.
    pub fn text(text: &str) -> PreparedMessage {
        PreparedMessage::frame(OpCode::Text, text.as_bytes())
    }

    /// A binary message.
    pub fn binary(data: &[u8]) -> PreparedMessage {
        PreparedMessage::frame(OpCode::Binary, data)
    }

    /// The same message as `message`, if it is a text or binary message (`None` for
    /// control messages, which are not broadcast).
    pub fn from_message(message: &Message) -> Option<PreparedMessage> {
        match message {
            Message::Text(text) => Some(PreparedMessage::text(text)),
            Message::Binary(data) => Some(PreparedMessage::binary(data)),
            _ => None,
        }
    }

    fn frame(opcode: OpCode, payload: &[u8]) -> PreparedMessage {
        let header = FrameHeader {
            fin: true,
            rsv: 0,
            opcode,
            mask: None,
            payload_len: payload.len() as u64,
        };
        let mut slot = [0u8; MAX_HEADER_LEN];
        let header_len = header.encode(&mut slot);
        let mut frame = Vec::with_capacity(header_len + payload.len());
        frame.extend_from_slice(&slot[..header_len]);
        frame.extend_from_slice(payload);
        PreparedMessage {
            frame: frame.into(),
            header_len,
            text: opcode == OpCode::Text,
        }
    }

    /// Whether it is a text message.
    pub fn is_text(&self) -> bool {
        self.text
    }

    /// The payload.
    pub fn payload(&self) -> &[u8] {
        &self.frame[self.header_len..]
    }

    /// The message as a [`Message`] (a copy of the payload).
    pub fn to_message(&self) -> Message {
        match self.text {
            true => Message::Text(String::from_utf8_lossy(self.payload()).into_owned()),
            false => Message::Binary(self.payload().to_vec()),
        }
    }

    /// The opcode of its frame.
    pub(crate) fn opcode(&self) -> OpCode {
        match self.text {
            true => OpCode::Text,
            false => OpCode::Binary,
        }
    }

    /// The server frame, shared.
    pub(crate) fn server_frame(&self) -> &Arc<[u8]> {
        &self.frame
    }
}
