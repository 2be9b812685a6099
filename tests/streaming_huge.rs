//! A 1 GiB message each way over 127.0.0.1 through streamed reads and writes, with the
//! process's peak resident memory (`VmHWM`) checked: neither side may hold the message.
//! Alone in its own test binary, so the peak is this test's.

mod common;

use std::io::Read;

use common::*;
use stdws::{Config, Error, MessageKind, Streamed};

const LEN: u64 = 1 << 30;

/// The process's peak resident memory, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
#[cfg(target_os = "linux")]
fn one_gib_each_way_in_bounded_memory() {
    let unlimited = Config::default()
        .max_message_size(None)
        .max_frame_size(None);
    let before = vm_hwm_kib();
    // The server streams the message back while it arrives.
    let server_config = unlimited.clone();
    let server = serve_one(move |stream| -> stdws::Result<u64> {
        let ws = stdws::accept_with(stream, server_config, |_, _| Ok(()))?;
        let (mut reader_ws, writer) = ws.split()?;
        let Streamed::Message(mut reader) = reader_ws.read_stream()? else {
            return Ok(0);
        };
        let mut out = writer.send_stream(reader.kind())?;
        let total = std::io::copy(&mut reader, &mut out).map_err(Error::Io)?;
        out.finish()?;
        Ok(total)
    });
    let (ws, _) = stdws::ClientBuilder::new(server.url("/"))
        .config(unlimited)
        .connect()
        .unwrap();
    set_timeouts(ws.get_ref());
    let (mut reader_ws, writer) = ws.split().unwrap();
    let sender = std::thread::spawn(move || {
        let mut out = writer.send_stream(MessageKind::Binary).unwrap();
        let mut source = std::io::repeat(0x5A).take(LEN);
        let sent = std::io::copy(&mut source, &mut out).unwrap();
        out.finish().unwrap();
        sent
    });
    let Streamed::Message(mut reader) = reader_ws.read_stream().unwrap() else {
        panic!("expected the echoed message");
    };
    let mut received = 0u64;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = reader.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        assert!(buf[..n].iter().all(|&b| b == 0x5A), "payload corrupted");
        received += n as u64;
    }
    assert_eq!(sender.join().unwrap(), LEN);
    assert_eq!(received, LEN);
    assert_eq!(server.join_one().unwrap(), LEN);
    let growth_kib = vm_hwm_kib().saturating_sub(before);
    println!("VmHWM before {before} KiB, growth {growth_kib} KiB for 1 GiB each way");
    // Buffers: 64 KiB fragments and read buffers on each side, a few threads' stacks.
    assert!(
        growth_kib < 8 * 1024,
        "peak resident memory grew by {growth_kib} KiB streaming 1 GiB"
    );
}
