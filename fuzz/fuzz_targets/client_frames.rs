//! A client `WebSocket::from_raw_socket` fed the fuzz input as the server's (unmasked) frames through a
//! fake stream that chops reads and writes and injects WouldBlock / Interrupted / TimedOut /
//! fatal errors; `read()` in a loop, echoing data messages with `write` (or, with cfg bit 4,
//! through split halves; bit 7 hands the first half over as `read_buffered`). Checked against the reference decoder (see `run_connection`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::Role;

fuzz_target!(|bytes: &[u8]| stdws_fuzz::fuzz_frames(bytes, Role::Client));
