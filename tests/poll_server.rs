//! `examples/poll_server` (the second driver over `stdws::proto`) as a client meets it: the
//! example, built here in the test profile, runs as a child process.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

/// A child process killed (by its own id) when dropped.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Builds `examples/poll_server` with the cargo that runs this test (a no-op when it is up
/// to date) and returns its path.
fn poll_server_binary() -> PathBuf {
    let manifest = env!("CARGO_MANIFEST_DIR");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let mut build = Command::new(cargo);
    build
        .args(["build", "--quiet", "--example", "poll_server"])
        .arg("--manifest-path")
        .arg(format!("{manifest}/Cargo.toml"));
    // Not the package variables cargo set for this test (build scripts that watch them
    // would run again).
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_MANIFEST_")
            || ["CARGO_CRATE_NAME", "CARGO_PRIMARY_PACKAGE", "OUT_DIR"].contains(&&*name)
        {
            build.env_remove(&*name);
        }
    }
    assert!(
        build.status().expect("cargo build").success(),
        "cargo build --example poll_server failed"
    );
    // This test runs from target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .and_then(|deps| deps.parent())
        .unwrap()
        .join("examples/poll_server")
}

/// Starts the server on a free port; returns it and its address.
fn start() -> (KillOnDrop, SocketAddr) {
    let binary = poll_server_binary();
    let mut child = Command::new(&binary)
        .arg("127.0.0.1:0")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
    let stderr = child.stderr.take().unwrap();
    let server = KillOnDrop(child);
    let (tx, rx) = std::sync::mpsc::channel();
    // Read the log to its end (a full pipe would stall the event loop).
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            if let Some(rest) = line.strip_prefix("poll_server: listening on ws://") {
                let addr = rest.split('/').next().unwrap();
                let _ = tx.send(addr.parse::<SocketAddr>().unwrap());
            }
        }
    });
    let addr = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("poll_server announces its address");
    (server, addr)
}

/// Opens a WebSocket connection by hand; returns the socket after the 101.
fn open(addr: SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(
        b"GET / HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
          Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
    )
    .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        s.read_exact(&mut byte).unwrap();
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101 "), "{head:?}");
    s
}

/// A client that sends large messages and does not read its echoes is not read either: the
/// server stops reading once 1 MiB of echoes waits for it (the client's sends stall), and
/// every echo arrives intact once the client reads. A large echo is queued as it is, so the
/// first piece of `Connection::output` (a frame header) said nothing of what waited: the
/// server read on and queued every echo, up to `max_write_buffer_size` (64 MiB), then
/// dropped the client. 64 MiB are sent: several times what the sockets' buffers hold (the
/// writer stalled after about 10 MB here).
#[test]
fn a_client_that_does_not_read_its_echoes_is_not_read_either() {
    const SIZE: usize = 512 << 10;
    const COUNT: usize = 128; // 64 MiB in all
    let (_server, addr) = start();
    let socket = open(addr);
    let sent = Arc::new(AtomicUsize::new(0));
    let writer = {
        let mut socket = socket.try_clone().unwrap();
        let sent = Arc::clone(&sent);
        thread::spawn(move || -> std::io::Result<()> {
            for i in 0..COUNT {
                // A zero masking key leaves the payload as it is: nothing to mask here.
                let mut frame = vec![0x82, 0x80 | 127];
                frame.extend_from_slice(&(SIZE as u64).to_be_bytes());
                frame.extend_from_slice(&[0; 4]);
                frame.resize(frame.len() + SIZE, i as u8);
                for chunk in frame.chunks(64 << 10) {
                    socket.write_all(chunk)?;
                    sent.fetch_add(chunk.len(), Ordering::Relaxed);
                }
            }
            Ok(())
        })
    };
    // Wait until the writer stalls (nothing more taken for 1 s) or is done.
    let mut last = (0, Instant::now());
    while last.1.elapsed() < Duration::from_secs(1) && !writer.is_finished() {
        thread::sleep(Duration::from_millis(50));
        let now = sent.load(Ordering::Relaxed);
        if now != last.0 {
            last = (now, Instant::now());
        }
    }
    let stalled_at = sent.load(Ordering::Relaxed);
    if writer.is_finished() {
        panic!(
            "the server read all it was sent ({stalled_at} bytes) from a client that reads \
             nothing, and the writer ended with {:?}",
            writer.join().unwrap()
        );
    }
    // Now read: every echo comes back, and the writer finishes.
    let mut reader = socket;
    let mut header = [0u8; 10];
    let mut payload = vec![0u8; SIZE];
    for i in 0..COUNT {
        reader.read_exact(&mut header).unwrap();
        assert_eq!(header[..2], [0x82, 127], "echo {i}");
        assert_eq!(
            u64::from_be_bytes(header[2..].try_into().unwrap()),
            SIZE as u64
        );
        reader.read_exact(&mut payload).unwrap();
        assert!(payload.iter().all(|&b| b == i as u8), "echo {i} differs");
    }
    writer.join().unwrap().unwrap();
    let close = common::client_frame(true, 0x8, &common::close_body(1000, b""));
    reader.write_all(&close).unwrap();
    let mut rest = Vec::new();
    reader.read_to_end(&mut rest).unwrap();
    assert_eq!(
        rest,
        common::server_frame(true, 0x8, &common::close_body(1000, b""))
    );
}
