//! Where a connection stands (RFC 6455 §4-7): which end it is ([`Role`]) and its state.

/// Which end of the connection this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Accepted the connection: receives masked frames, sends unmasked ones.
    Server,
    /// Opened the connection: sends masked frames, receives unmasked ones.
    Client,
}
