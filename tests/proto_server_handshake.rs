//! `proto::ServerHandshake` driven by a reader that keeps reading after the request head
//! arrived (the head ended inside an earlier chunk, or it reads on before calling
//! `accept`): the frames behind the head reach the `Connection`, however the bytes were
//! chopped.
//!
//! Found by the `server_handshake` fuzz target (fuzz/README.md, F5): those bytes were
//! dropped. The fix is main's 49413bc (its own tests are in tests/proto.rs there).

mod common;

use common::{client_frame, upgrade_request};
use stdws::proto::ServerHandshake;
use stdws::{Config, Message};

#[test]
fn bytes_fed_after_the_request_reach_the_connection() {
    let mut wire = upgrade_request("/chat").into_bytes();
    let head = wire.len();
    wire.extend(client_frame(true, 1, b"behind the head"));
    wire.extend(client_frame(true, 2, &[7; 300]));
    for chunk in [1, 2, 7, 50, 4096] {
        let mut hs = ServerHandshake::new(Config::default());
        let mut fed = 0;
        // Read on until everything arrived, as a driver that does not stop at the head.
        while fed < wire.len() {
            let room = hs.read_buf();
            let n = room.len().min(chunk).min(wire.len() - fed);
            room[..n].copy_from_slice(&wire[fed..fed + n]);
            fed += n;
            let done = hs.filled(n).expect("a valid request").is_some();
            assert_eq!(done, fed >= head, "chunk {chunk}, {fed} bytes fed");
        }
        let mut conn = hs.accept().expect("accepted");
        let n = conn.output().len();
        conn.consume(n);
        assert_eq!(
            conn.poll().unwrap(),
            Some(Message::text("behind the head")),
            "chunk {chunk}"
        );
        assert_eq!(
            conn.poll().unwrap(),
            Some(Message::binary(vec![7; 300])),
            "chunk {chunk}"
        );
        assert_eq!(conn.poll().unwrap(), None);
    }
}
