//! A server `WebSocket::from_raw_socket` fed the fuzz input as the client's frames through a
//! fake stream that chops reads and writes and injects WouldBlock / Interrupted / TimedOut /
//! fatal errors; `read()` in a loop, echoing data messages with `write` (or, with cfg bit 4,
//! through split halves; bit 7 hands the first half over as `read_buffered`). Checked against the reference decoder (see `run_connection`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::{Role, WebSocket};
use stdws_fuzz::{run_connection, Conn, FuzzStream, Input};

fuzz_target!(|bytes: &[u8]| {
    let input = Input::split(bytes);
    // cfg bit 7: the first half of the bytes arrived with the handshake (`read_buffered`).
    let buffered = if input.cfg & 0x80 != 0 {
        input.data.len() / 2
    } else {
        0
    };
    let (early, rest) = input.data.split_at(buffered);
    let stream = FuzzStream::new(&input, rest);
    let ws =
        WebSocket::from_raw_socket(stream.clone(), Role::Server, input.config(), early.to_vec());
    let conn = Conn::new(ws, input.cfg & 0x10 != 0);
    run_connection(&input, &stream, conn, Role::Server, input.data, 0);
});
