//! `stdws::proto::Connection` driven directly, in either role, by the sans-I/O driver of
//! `src/proto.rs`: the input's bytes are the peer's frames, fed in chunks the input
//! chooses, with sends, partial `consume`s of the output, `on_timeout` calls at synthetic
//! instants and EOF interleaved; then the same bytes again one byte at a time and, for short
//! inputs, split at every point, which must read exactly the same messages and end the same
//! way. Every run is checked against the reference decoder (what is read) and a model of
//! the connection (state, timer, errors, and the exact frames of the output).
//!
//! Layout: `[cfg] [lens] [chunk sizes: lens & 0x0F bytes] [ops: lens >> 4 bytes] [data]`
//! (see `proto::Drive` for the chunk and op bytes). `cfg` bits: 0 client role (server
//! otherwise); 1 outgoing messages in 7-byte fragments; 2 tight limits (frame 300, message
//! 700 bytes); 3 256-byte read buffer (4 KiB otherwise); 4 keep-alive (100 ms + 50 ms of
//! synthetic time); 5 `max_write_buffer_size` 64 (4096 otherwise); 6 sends take owned
//! `Message`s (`send`) instead of slices; 7 EOF after the data.
#![no_main]

use libfuzzer_sys::fuzz_target;
use stdws::proto::Connection;
use stdws::Role;
use stdws_fuzz::proto::{self, check_same, Counting, Drive};
use stdws_fuzz::Input;

#[global_allocator]
static ALLOC: Counting = Counting;

/// Inputs up to this long are also fed in two pieces, split at every point.
const SPLIT_ALL: usize = 48;

fuzz_target!(|bytes: &[u8]| {
    let input = Input::split(bytes);
    let c = input.cfg;
    let role = if c & 0x01 != 0 {
        Role::Client
    } else {
        Role::Server
    };
    let keepalive = c & 0x10 != 0;
    let config = proto::with_keepalive(
        proto::config(c & 0x02 != 0, c & 0x04 != 0, c & 0x08 != 0, c & 0x20 != 0),
        keepalive,
    );
    let (eof, owned) = (c & 0x80 != 0, c & 0x40 != 0);
    let data = input.data;
    let ctx = format!("cfg {c:#04x}, {} data bytes", data.len());
    let run = |drive: Drive<'_>| {
        let conn = Connection::new(role, config.clone());
        proto::run(conn, drive, keepalive, data, data, &ctx)
    };
    let first = run(Drive {
        chunks: input.read_schedule,
        ops: input.write_schedule,
        eof,
        owned,
        probe_growth: true,
    });
    let bytewise = run(Drive::bytewise(eof, owned));
    check_same(&first, &bytewise, "one byte at a time");
    if data.len() <= SPLIT_ALL {
        for k in 1..data.len() {
            let chunks = [k as u8, 0];
            let split = run(Drive::split_at(&chunks, eof, owned));
            check_same(&first, &split, &format!("split at {k}"));
        }
    }
});
