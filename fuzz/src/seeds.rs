//! The hand-made seed inputs, by target. `cargo run --example gen_seeds` writes them to
//! `fuzz/seeds/<target>/<name>`; they are committed so a run starts from meaningful inputs.

/// One frame, encoded by hand with the shortest length form (or the 64-bit form if `long`).
pub fn frame_with(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>, long: bool) -> Vec<u8> {
    let mut v = vec![(u8::from(fin) << 7) | op];
    let m = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if long {
        v.push(m | 127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    } else if len < 126 {
        v.push(m | len as u8);
    } else if len <= 0xFFFF {
        v.push(m | 126);
        v.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        v.push(m | 127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            v.extend_from_slice(&key);
            v.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => v.extend_from_slice(payload),
    }
    v
}

pub fn frame(fin: bool, op: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    frame_with(fin, op, payload, mask, false)
}

fn close_body(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut v = code.to_be_bytes().to_vec();
    v.extend_from_slice(reason);
    v
}

/// Frame streams as a client (masked) or a server (unmasked) sends them, by name.
pub fn frame_streams(masked: bool) -> Vec<(&'static str, Vec<u8>)> {
    let key = masked.then_some([0x37, 0xfa, 0x21, 0x3d]);
    let f = |fin, op, p: &[u8]| frame(fin, op, p, key);
    let cat = |parts: Vec<Vec<u8>>| parts.concat();
    let close = f(true, 8, &close_body(1000, b"bye"));
    let mut v: Vec<(&'static str, Vec<u8>)> = vec![
        ("text_hello", cat(vec![f(true, 1, b"Hello"), close.clone()])),
        ("text_hello_eof", f(true, 1, b"Hello")),
        (
            "binary_256_len16",
            cat(vec![
                f(true, 2, &(0..=255).collect::<Vec<u8>>()),
                close.clone(),
            ]),
        ),
        (
            "binary_300_len64",
            cat(vec![
                frame_with(true, 2, &[0xAB; 300], key, true),
                close.clone(),
            ]),
        ),
        (
            "binary_5000_direct",
            cat(vec![
                f(
                    true,
                    2,
                    &(0..5000u32).map(|i| (i * 7) as u8).collect::<Vec<_>>(),
                ),
                close.clone(),
            ]),
        ),
        (
            "fragmented_text_with_ping",
            cat(vec![
                f(false, 1, b"Hel"),
                f(true, 9, b"ping!"),
                f(false, 0, b"lo w"),
                f(true, 0, b"orld"),
                close.clone(),
            ]),
        ),
        (
            "fragmented_binary_3",
            cat(vec![
                f(false, 2, &[1; 100]),
                f(false, 0, &[2; 200]),
                f(true, 0, &[3; 50]),
                close.clone(),
            ]),
        ),
        (
            "utf8_split_across_fragments",
            cat(vec![
                f(false, 1, "κό".as_bytes()),
                f(false, 0, &"σμε 𝄞".as_bytes()[..6]),
                f(true, 0, &"σμε 𝄞".as_bytes()[6..]),
                close.clone(),
            ]),
        ),
        (
            "invalid_utf8",
            cat(vec![f(true, 1, b"ab\xffcd"), close.clone()]),
        ),
        (
            "invalid_utf8_late_in_fragment",
            cat(vec![f(false, 1, b"abc"), f(true, 0, &[0xED, 0xA0, 0x80])]),
        ),
        (
            "truncated_utf8_at_fin",
            cat(vec![f(false, 1, &[b'a', 0xE2]), f(true, 0, &[0x82])]),
        ),
        (
            "ping_pong_close",
            cat(vec![
                f(true, 9, b"hi"),
                f(true, 10, b"there"),
                f(true, 9, b""),
                close.clone(),
            ]),
        ),
        (
            "ping_125",
            cat(vec![f(true, 9, &[b'p'; 125]), close.clone()]),
        ),
        ("close_1000_bye", close.clone()),
        ("close_empty", f(true, 8, b"")),
        ("close_one_byte", f(true, 8, &[3])),
        ("close_1005_invalid", f(true, 8, &close_body(1005, b""))),
        (
            "close_4999_reason",
            f(true, 8, &close_body(4999, b"custom")),
        ),
        (
            "close_bad_utf8_reason",
            f(true, 8, &close_body(1000, b"\xc3(")),
        ),
        ("rsv1_set", {
            let mut x = f(true, 1, b"x");
            x[0] |= 0x40;
            x
        }),
        ("reserved_opcode", f(true, 3, b"x")),
        ("control_126", {
            let mut x = frame_with(true, 9, &[0; 126], key, false);
            x.truncate(40);
            x
        }),
        ("fragmented_ping", f(false, 9, b"x")),
        ("continuation_first", f(true, 0, b"x")),
        (
            "text_during_fragment",
            cat(vec![f(false, 1, b"a"), f(true, 1, b"b")]),
        ),
        ("len64_top_bit", {
            let mut x = vec![0x82, if masked { 0xFF } else { 0x7F }, 0x80];
            x.extend_from_slice(&[0; 7]);
            x
        }),
        ("len64_huge_header_only", {
            let mut x = vec![0x82, if masked { 0xFF } else { 0x7F }];
            x.extend_from_slice(&(1u64 << 40).to_be_bytes());
            x.extend_from_slice(&[1, 2, 3, 4]);
            x
        }),
        (
            "wrong_masking",
            frame(
                true,
                1,
                b"x",
                if masked { None } else { Some([1, 2, 3, 4]) },
            ),
        ),
        ("many_small_frames", {
            let mut x = Vec::new();
            for i in 0..150u8 {
                x.extend(f(true, 2, &[i; 10]));
            }
            x.extend(close.clone());
            x
        }),
        (
            // A ping starting with '!' makes the harness call close() itself.
            "we_close_first",
            cat(vec![
                f(true, 1, b"a"),
                f(true, 9, b"!close"),
                f(true, 2, b"still delivered"),
                f(true, 9, b"no pong now"),
                f(false, 1, b"frag"),
                f(true, 0, b"mented"),
                close.clone(),
            ]),
        ),
        (
            "we_close_then_violation",
            cat(vec![f(true, 9, b"!"), f(true, 3, b"reserved opcode")]),
        ),
        (
            "data_after_close",
            cat(vec![close.clone(), f(true, 1, b"late")]),
        ),
    ];
    // The same streams delivered in small pieces with WouldBlock / Interrupted / TimedOut
    // between them, and short or blocked writes.
    let chopped: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "chopped_fragmented_text_with_ping",
            v.iter()
                .find(|(n, _)| *n == "fragmented_text_with_ping")
                .unwrap()
                .1
                .clone(),
        ),
        (
            "chopped_binary_5000_direct",
            v.iter()
                .find(|(n, _)| *n == "binary_5000_direct")
                .unwrap()
                .1
                .clone(),
        ),
        (
            "chopped_we_close_first",
            v.iter()
                .find(|(n, _)| *n == "we_close_first")
                .unwrap()
                .1
                .clone(),
        ),
        (
            "chopped_utf8_split_across_fragments",
            v.iter()
                .find(|(n, _)| *n == "utf8_split_across_fragments")
                .unwrap()
                .1
                .clone(),
        ),
    ];
    for (_, bytes) in v.iter_mut() {
        bytes.splice(0..0, [0u8, 0u8]);
    }
    // cfg 0x05: 256-byte read buffer and write-through; read schedule 1,3,WouldBlock,7,
    // Interrupted,200,TimedOut; write schedule 2,WouldBlock,5.
    for (name, bytes) in chopped {
        let mut x = vec![0x05, 0x37, 1, 3, 0xFF, 7, 0xFE, 200, 0xFD, 2, 0xFF, 5];
        x.extend(bytes);
        v.push((name, x));
    }
    // Tight limits (cfg bit 3): a frame over 300 bytes, a message over 700.
    let mut too_big = vec![0x08, 0x00];
    too_big.extend(f(true, 2, &[0; 301]));
    v.push(("limit_frame_too_big", too_big));
    let mut msg_too_big = vec![0x08, 0x00];
    for _ in 0..3 {
        msg_too_big.extend(f(false, 2, &[0; 250]));
    }
    v.push(("limit_message_too_big", msg_too_big));
    // Fragmented echoes (cfg bit 1) and split halves (bit 4).
    let mut frag = vec![0x12, 0x00];
    frag.extend(f(true, 1, b"echo me in seven-byte frames"));
    frag.extend(f(true, 9, b"p"));
    frag.extend(close.clone());
    v.push(("split_fragmented_echo", frag));
    // A write buffer that fills up while writes block (bit 5, write schedule all WouldBlock).
    let mut full = vec![0x20, 0x10, 0xFF];
    for _ in 0..10 {
        full.extend(f(true, 2, &[7; 40]));
    }
    v.push(("write_buffer_full", full));
    v
}

pub const RFC_REQUEST: &str =
    "GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Origin: http://example.com\r\nSec-WebSocket-Protocol: chat, superchat\r\n\
Sec-WebSocket-Version: 13\r\n\r\n";

pub fn requests() -> Vec<(&'static str, Vec<u8>)> {
    let r = RFC_REQUEST;
    vec![
        ("rfc", r.into()),
        (
            "firefox_tokens",
            r.replace("Connection: Upgrade", "Connection: keep-alive, Upgrade")
                .replace("Upgrade: websocket", "Upgrade: WebSocket")
                .into(),
        ),
        ("bare_lf", r.replace("\r\n", "\n").into()),
        ("query", r.replace("/chat", "/chat?room=1&x=%20y").into()),
        ("post", r.replace("GET", "POST").into()),
        ("http10", r.replace("HTTP/1.1", "HTTP/1.0").into()),
        ("http2", r.replace("HTTP/1.1", "HTTP/2").into()),
        (
            "no_key",
            r.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "")
                .into(),
        ),
        (
            "short_key",
            r.replace("dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==")
                .into(),
        ),
        ("version_8", r.replace("Version: 13", "Version: 8").into()),
        (
            "two_hosts",
            r.replace("Host: server", "Host: a\r\nHost: server").into(),
        ),
        ("plain_get", "GET / HTTP/1.1\r\nHost: x\r\n\r\n".into()),
        ("folded", r.replace("Origin:", " folded\r\nOrigin:").into()),
        (
            "control_char",
            r.replace("example.com\r\nUp", "exa\x01mple\r\nUp").into(),
        ),
        (
            "not_utf8",
            r.replace("server.example", "serv\u{e9}r")
                .into_bytes()
                .into_iter()
                .map(|b| if b == 0xc3 { 0xff } else { b })
                .collect(),
        ),
        (
            "many_headers",
            r.replace("\r\n\r\n", &format!("\r\n{}\r\n", "X-A: b\r\n".repeat(70)))
                .into(),
        ),
        (
            "huge_header",
            r.replace(
                "\r\n\r\n",
                &format!("\r\nX-Big: {}\r\n\r\n", "a".repeat(5000)),
            )
            .into(),
        ),
        (
            "empty_protocols",
            r.replace("chat, superchat", " , ,chat,, ").into(),
        ),
    ]
}

pub const RESPONSE_101: &str = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
Connection: Upgrade\r\nSec-WebSocket-Accept: @ACCEPT@\r\n\r\n";

pub fn responses() -> Vec<(&'static str, Vec<u8>)> {
    let r = RESPONSE_101;
    vec![
        ("101", r.into()),
        (
            "101_subprotocol",
            r.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat\r\n\r\n").into(),
        ),
        (
            "101_unoffered_subprotocol",
            r.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: other\r\n\r\n").into(),
        ),
        (
            "101_extension",
            r.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n")
                .into(),
        ),
        (
            "101_rfc_accept",
            r.replace("@ACCEPT@", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=").into(),
        ),
        ("101_bare_lf", r.replace("\r\n", "\n").into()),
        (
            "101_keepalive_tokens",
            r.replace("Connection: Upgrade", "Connection: keep-alive, upgrade").into(),
        ),
        (
            "403_body",
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\norigin denied".into(),
        ),
        (
            "401_no_length",
            "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic\r\n\r\npartial body".into(),
        ),
        (
            "404_long_length",
            "HTTP/1.1 404 Not Found\r\nContent-Length: 99999999999\r\n\r\nabc".into(),
        ),
        // Finding F1 (fixed in 047d62d): the body is empty, not the bytes after the head.
        (
            "403_content_length_zero_F1",
            "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\nNOT-A-BODY".into(),
        ),
        ("http2_status", "HTTP/2 200\r\n\r\n".into()),
        ("bad_status", "HTTP/1.1 1x1 Nope\r\n\r\n".into()),
        ("no_reason", "HTTP/1.1 101\r\n\r\n".into()),
    ]
}

/// Seeds for every target, as (target, name, bytes).
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_owned(), bytes));
    };
    // frame_header: raw header bytes.
    let headers: Vec<(&str, Vec<u8>)> = vec![
        (
            "rfc_unmasked_hello",
            vec![0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f],
        ),
        (
            "rfc_masked_hello",
            vec![
                0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
            ],
        ),
        ("len16", vec![0x82, 0x7E, 0x01, 0x00]),
        ("len16_nonminimal", vec![0x82, 0x7E, 0x00, 0x05]),
        ("len64", vec![0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]),
        (
            "len64_masked",
            vec![0x82, 0xFF, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4],
        ),
        ("len64_top_bit", vec![0x82, 0x7F, 0x80, 0, 0, 0, 0, 0, 0, 0]),
        ("ping_126", vec![0x89, 0x7E, 0x00, 0x7E]),
        ("fragmented_ping", vec![0x09, 0x00]),
        ("rsv_all", vec![0xF1, 0x00]),
        ("reserved_opcode", vec![0x8B, 0x00]),
    ];
    for (name, bytes) in headers {
        add("frame_header", name, bytes);
    }
    // mask: [key x4][offset][split] data.
    add("mask", "short", b"\x37\xfa\x21\x3d\x00\x02Hello".to_vec());
    add("mask", "long_offset", {
        let mut x = b"\x01\x02\x03\x04\x03\x45".to_vec();
        x.extend((0..200u8).collect::<Vec<_>>());
        x
    });
    // client_request: url \n header name \n header value \n subprotocol.
    for (name, text) in [
        ("plain", "ws://example.com/chat"),
        (
            "ipv6_port_query",
            "ws://[::1]:9001/a/b?c=d&e=%20\nOrigin\nhttp://o\nchat.v1",
        ),
        (
            "wss_default_port",
            "wss://example.com:443\nAuthorization\nBearer x",
        ),
        ("host_override", "ws://10.0.0.1:8080/\nHost\nexample.com"),
        (
            "non_ascii_path",
            "ws://h/p\u{e4}th?q=\u{263a}\nX-Trace\n  spaced value  ",
        ),
        ("bad_header", "ws://h/\nX\r\nY\nz"),
        ("bad_protocol", "ws://h/\nX\ny\na b"),
        // Findings F2 and F3 (fixed in 047d62d): must be refused with InvalidInput.
        ("empty_host_F2", "ws://h/\nHost\n"),
        (
            "protocol_by_hand_F3",
            "ws://h/\nSec-WebSocket-Protocol\nx\nchat",
        ),
    ] {
        add("client_request", name, text.as_bytes().to_vec());
    }
    // request_head / response_head: [max_headers] head.
    for (name, bytes) in requests() {
        let mut x = vec![64];
        x.extend_from_slice(&bytes);
        add("request_head", name, x);
    }
    for (name, bytes) in responses() {
        let mut x = vec![64];
        x.extend_from_slice(&bytes);
        add("response_head", name, x);
    }
    // server_frames / client_frames: [cfg][lens][schedules] frames.
    for (name, bytes) in frame_streams(true) {
        add("server_frames", name, bytes);
    }
    for (name, bytes) in frame_streams(false) {
        add("client_frames", name, bytes);
    }
    // server_stream: a request head, then (some of) the client's frames.
    let client_frames = frame_streams(true);
    for (name, req) in requests() {
        let mut x = vec![0u8, 0];
        x.extend_from_slice(&req);
        add("server_stream", name, x);
    }
    for (name, frames) in client_frames.iter().filter(|(n, _)| {
        matches!(
            *n,
            "text_hello"
                | "fragmented_text_with_ping"
                | "chopped_binary_5000_direct"
                | "invalid_utf8"
                | "ping_pong_close"
                | "split_fragmented_echo"
                | "we_close_first"
        )
    }) {
        // Keep the frames' own prefix (cfg, schedules) in front of the request.
        let (prefix, body) = split_prefix(frames);
        let mut x = prefix;
        x.extend_from_slice(RFC_REQUEST.as_bytes());
        x.extend_from_slice(body);
        add("server_stream", &format!("rfc_then_{name}"), x);
    }
    // client_stream: a response head, then (some of) the server's frames.
    let server_frames = frame_streams(false);
    for (name, resp) in responses() {
        let mut x = vec![0u8, 0];
        x.extend_from_slice(&resp);
        add("client_stream", name, x);
    }
    for (name, frames) in server_frames.iter().filter(|(n, _)| {
        matches!(
            *n,
            "text_hello"
                | "fragmented_text_with_ping"
                | "chopped_binary_5000_direct"
                | "invalid_utf8"
                | "ping_pong_close"
                | "close_empty"
                | "split_fragmented_echo"
                | "we_close_first"
        )
    }) {
        let (prefix, body) = split_prefix(frames);
        let mut x = prefix;
        x.extend_from_slice(RESPONSE_101.as_bytes());
        x.extend_from_slice(body);
        add("client_stream", &format!("101_then_{name}"), x);
    }
    // connection: [cfg][lens][chunk sizes][ops] frames; cfg bit 0 = client role, bit 7 =
    // EOF after the data (see fuzz_targets/connection.rs). The frame streams of the blocking
    // targets, with their cfg mapped onto the connection target's bits.
    for (role_bit, masked, prefix_name) in [(0u8, true, "server"), (1u8, false, "client")] {
        for (name, bytes) in frame_streams(masked) {
            let (prefix, data) = split_prefix(&bytes);
            let mut x = match prefix[0] {
                // Chopped delivery: 256-byte read buffer, chunks 1, 3, 7, 200; ops: consume
                // 1 byte, 25 ms pass, consume 5, consume all.
                0x05 => vec![0x88 | role_bit, 0x44, 1, 3, 7, 200, 0x01, 0x45, 0x05, 0x00],
                0x08 => vec![0x84 | role_bit, 0x00],
                0x12 => vec![0x82 | role_bit, 0x00],
                0x20 => vec![0xA0 | role_bit, 0x10, 0x45],
                _ => vec![0x80 | role_bit, 0x00],
            };
            x.extend_from_slice(data);
            add("connection", &format!("{prefix_name}_{name}"), x);
        }
        let key = masked.then_some([0x37, 0xfa, 0x21, 0x3d]);
        let hello = frame(true, 1, b"Hello", key);
        // Keep-alive: 100 ms pass (ping due), then 50 ms more (timeout, close 1011).
        let mut x = vec![0x90 | role_bit, 0x20, 0x54, 0x4A];
        x.extend_from_slice(&hello);
        x.extend_from_slice(&hello);
        add("connection", &format!("{prefix_name}_keepalive_timeout"), x);
        // Keep-alive answered: ping due, then input arrives before the timeout.
        let mut x = vec![0x90 | role_bit, 0x11, 10, 0x54];
        x.extend_from_slice(&frame(true, 10, b"keepalive", key));
        x.extend_from_slice(&hello);
        add(
            "connection",
            &format!("{prefix_name}_keepalive_answered"),
            x,
        );
        // Sends from our side: text 72 bytes, binary 9, a 135-byte ping (refused), a pong,
        // consume 3, close 3000 with a 40-byte reason, close 1005 (refused), consume all.
        let mut x = vec![
            0x42 | role_bit,
            0x81,
            6,
            0xA0,
            0x85,
            0xBE,
            0x87,
            0x03,
            0xD2,
            0xC5,
            0x00,
        ];
        for _ in 0..6 {
            x.extend_from_slice(&hello);
        }
        x.extend_from_slice(&frame(true, 8, &close_body(1000, b""), key));
        add("connection", &format!("{prefix_name}_sends_and_close"), x);
        // Finding F4 (fixed in 55754ba): bytes fed after the end were kept. The peer's
        // close (or, for a server, an unmasked frame), then junk the driver still reads.
        let mut x = vec![0x80 | role_bit, 0x00];
        x.extend_from_slice(&frame(true, 8, &close_body(1000, b""), key));
        x.extend_from_slice(&[0x82; 300]);
        add(
            "connection",
            &format!("{prefix_name}_close_then_junk_F4"),
            x,
        );
        let mut x = vec![0x80 | role_bit, 0x00];
        x.extend_from_slice(&frame(
            true,
            1,
            b"wrong masking",
            (!masked).then_some([1, 2, 3, 4]),
        ));
        x.extend_from_slice(&[0x82; 300]);
        add(
            "connection",
            &format!("{prefix_name}_violation_then_junk_F4"),
            x,
        );
        // Tight output limit with sends that hit WriteBufferFull, no EOF.
        let mut x = vec![0x20 | role_bit, 0x41, 2, 0xBC, 0xBC, 0xBC, 0xBD];
        for _ in 0..8 {
            x.extend_from_slice(&frame(true, 9, b"ping", key));
        }
        add("connection", &format!("{prefix_name}_write_buffer_full"), x);
        // A ping flood in 160-byte chunks with a 64-byte output limit: the pongs stop at
        // the limit, and the latest ping of a chunk is answered once the output is consumed.
        let mut x = vec![0xA0 | role_bit, 0x11, 160, 0x00];
        for i in 0..40u8 {
            x.extend_from_slice(&frame(true, 9, &[b'p', i], key));
        }
        x.extend_from_slice(&frame(true, 8, &close_body(1000, b""), key));
        add("connection", &format!("{prefix_name}_ping_flood"), x);
    }
    // server_handshake: [cfg][lens][chunk sizes][ops] request head, then frames.
    // cfg 0x0F: 4 KiB head, 64 headers; 0x01: 200 bytes, 4 headers; 0x80: EOF after data;
    // 0x10: accept_with; 0x20: keep feeding after the request; 0x40: reject/respond.
    for (name, req) in requests() {
        let mut x = vec![0x0F, 0x00];
        x.extend_from_slice(&req);
        add("server_handshake", name, x);
    }
    for (cfg, name) in [
        (0x01u8, "rfc_tight_limits"),
        (0x0D, "rfc_head_200"),
        (0x0B, "rfc_six_headers"),
        (0x4F, "rfc_reject"),
        (0x5F, "rfc_respond"),
    ] {
        let mut x = vec![cfg, 0x00];
        x.extend_from_slice(RFC_REQUEST.as_bytes());
        add("server_handshake", name, x);
    }
    for (name, frames) in client_frames.iter().filter(|(n, _)| {
        matches!(
            *n,
            "text_hello" | "fragmented_text_with_ping" | "ping_pong_close" | "we_close_first"
        )
    }) {
        let (_, body) = split_prefix(frames);
        for (cfg, lens, sched, suffix) in [
            (0x8Fu8, 0x00u8, &[][..], ""),
            // Chunks of 50 bytes: the head ends inside a chunk, frames follow it.
            (0x8F, 0x11, &[50, 0x00][..], "_chunked_50"),
            // The same, fed to the handshake after the request arrived too. Finding F5
            // (fixed in 03fdb12, from main's 49413bc): those bytes were dropped.
            (0xAF, 0x11, &[50, 0x00][..], "_keep_feeding_F5"),
            (0x9F, 0x00, &[][..], "_accept_with"),
        ] {
            let mut x = vec![cfg, lens];
            x.extend_from_slice(sched);
            x.extend_from_slice(RFC_REQUEST.as_bytes());
            x.extend_from_slice(body);
            add("server_handshake", &format!("rfc_then_{name}{suffix}"), x);
        }
    }
    // client_handshake: [cfg][lens][chunk sizes][ops] response head, then frames.
    // cfg 0x0F: 4 KiB head, 64 headers; 0x10: offer chat, superchat; 0x20: the request is
    // written in pieces; 0x40: EOF after the data; 0x80: keep feeding after the answer.
    for (name, resp) in responses() {
        let mut x = vec![0x1F, 0x00];
        x.extend_from_slice(&resp);
        add("client_handshake", name, x);
    }
    for (cfg, lens, sched, resp, name) in [
        // No subprotocol offered: the server may not choose one.
        (
            0x0Fu8,
            0x00u8,
            &[][..],
            responses()[1].1.clone(),
            "101_subprotocol_not_offered",
        ),
        // Tight head limits: 64 bytes (too small for the 101), 4 headers.
        (0x10, 0x00, &[][..], RESPONSE_101.into(), "101_head_64"),
        (0x1D, 0x00, &[][..], RESPONSE_101.into(), "101_head_200"),
        // A refusal's body in 3-byte chunks while the request goes out 5 bytes at a time.
        (
            0x7F,
            0x11,
            &[3, 5][..],
            responses()[7].1.clone(),
            "403_body_chunked",
        ),
        // More body than declared, fed after the answer is complete.
        (
            0x9F,
            0x01,
            &[40][..],
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 4\r\n\r\ndenyEXTRA BYTES".to_vec(),
            "403_extra_after_body",
        ),
        // The declared body never arrives (no EOF): finish() is refused.
        (
            0x1F,
            0x00,
            &[][..],
            b"HTTP/1.1 403 Forbidden\r\nContent-Length: 20\r\n\r\nshort".to_vec(),
            "403_waiting_for_body",
        ),
        (
            0x5F,
            0x00,
            &[][..],
            responses()[9].1.clone(),
            "404_long_length_eof",
        ),
        (
            0x5F,
            0x00,
            &[][..],
            b"HTTP/1.1 101 Switching".to_vec(),
            "eof_in_head",
        ),
        // Finding F6: an accepted response reported the raw header value "chat," as its
        // subprotocol.
        (
            0x1F,
            0x00,
            &[][..],
            RESPONSE_101
                .replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: chat,\r\n\r\n")
                .into(),
            "101_subprotocol_trailing_comma_F6",
        ),
        // Finding F7: the request consumed 5 bytes, then "all" (usize::MAX): the sum
        // overflowed.
        (
            0x7F,
            0x21,
            &[30, 5, 0][..],
            RESPONSE_101.into(),
            "101_request_consumed_5_then_all_F7",
        ),
    ] {
        let mut x = vec![cfg, lens];
        x.extend_from_slice(sched);
        x.extend_from_slice(&resp);
        add("client_handshake", name, x);
    }
    for (name, frames) in server_frames.iter().filter(|(n, _)| {
        matches!(
            *n,
            "text_hello"
                | "fragmented_text_with_ping"
                | "ping_pong_close"
                | "close_empty"
                | "invalid_utf8"
                | "we_close_first"
        )
    }) {
        let (_, body) = split_prefix(frames);
        for (cfg, lens, sched, suffix) in [
            (0x5Fu8, 0x00u8, &[][..], ""),
            // Chunks of 50 bytes: the head ends inside a chunk, frames follow it.
            (0x5F, 0x11, &[50, 0x00][..], "_chunked_50"),
            // The same, fed to the handshake after the answer is complete too.
            (0xDF, 0x11, &[50, 0x00][..], "_keep_feeding"),
            // The request written 7 bytes at a time while the answer arrives in 30s.
            (0x7F, 0x11, &[30, 0x07][..], "_request_in_pieces"),
        ] {
            let mut x = vec![cfg, lens];
            x.extend_from_slice(sched);
            x.extend_from_slice(RESPONSE_101.as_bytes());
            x.extend_from_slice(body);
            add("client_handshake", &format!("101_then_{name}{suffix}"), x);
        }
    }
    for (name, bytes) in deflate_inputs() {
        add("deflate", name, bytes);
    }
    out
}

/// `deflate` inputs: `[cfg] [client bits] [server bits] [misc] [chunks] [program]` (see
/// `src/deflate.rs`).
pub fn deflate_inputs() -> Vec<(&'static str, Vec<u8>)> {
    use crate::deflate::op::{self, op};
    let input = |header: [u8; 4], chunks: &[u8], program: Vec<Vec<u8>>| {
        let mut v = header.to_vec();
        v[3] = (v[3] & 0xf0) | chunks.len() as u8;
        v.extend_from_slice(chunks);
        v.extend(program.concat());
        v
    };
    // A data message: repeat `unit` 2^log times, with `flags` (see `op::MSG`).
    let msg = |log: u8, flags: u8, unit: &[u8]| {
        let mut v = vec![op(op::MSG, log), flags, unit.len() as u8];
        v.extend_from_slice(unit);
        v
    };
    let frame = |header: u8, payload: &[u8]| {
        let mut v = vec![op(op::FRAME, payload.len() as u8), header];
        v.extend_from_slice(payload);
        v
    };
    let close = vec![op(op::CLOSE, 3)];
    let json = br#"{"type":"trade","symbol":"BTC-USD","price":"43000.25"}"#;
    // RFC 7692 §7.2.3.1 and §7.2.3.2: "Hello", then "Hello" referring back to it.
    let rfc_hello = [0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00];
    let rfc_again = [0xf2, 0x00, 0x11, 0x00, 0x00];
    vec![
        (
            "server_text_then_close",
            input(
                [0x00, 0, 0, 0],
                &[],
                vec![msg(3, 0x01, b"Hello, world"), close.clone()],
            ),
        ),
        (
            "client_binary_then_close",
            input(
                [0x01, 0, 0, 0],
                &[],
                vec![msg(2, 0x00, json), close.clone()],
            ),
        ),
        (
            "rfc_7692_hello_context_takeover",
            input(
                [0x00, 0, 0, 0],
                &[],
                vec![
                    frame(0xC1, &rfc_hello),
                    frame(0xC1, &rfc_again),
                    close.clone(),
                ],
            ),
        ),
        (
            "context_takeover_repeats",
            input(
                [0x01, 0, 0, 0],
                &[],
                vec![msg(0, 0x01, json), msg(0, 0x01, json), msg(0, 0x00, json)],
            ),
        ),
        (
            "fragmented_4_with_pings",
            input(
                [0x00, 0, 0, 0],
                &[],
                vec![msg(4, 0x87, b"fragmented text "), close.clone()],
            ),
        ),
        (
            "no_context_takeover_window_8",
            input(
                [0x1E, 0x88, 0x88, 0],
                &[],
                vec![msg(2, 0x01, json), msg(2, 0x03, json), close.clone()],
            ),
        ),
        (
            "client_no_context_takeover_window_9_15_eof",
            input(
                [0x97, 0x8F, 0x19, 0],
                &[],
                vec![msg(3, 0x00, json), msg(3, 0x00, json)],
            ),
        ),
        (
            "final_block_then_more",
            input(
                [0x00, 0, 0, 0],
                &[],
                vec![msg(1, 0x09, json), msg(1, 0x01, json), close.clone()],
            ),
        ),
        (
            "stored_blocks_level_0",
            input(
                [0x00, 0, 0, 0x80],
                &[],
                vec![msg(5, 0x05, json), close.clone()],
            ),
        ),
        (
            "chunked_1_7_0",
            input(
                [0x00, 0, 0, 0],
                &[1, 7, 0],
                vec![msg(6, 0x03, json), msg(6, 0x01, json), close.clone()],
            ),
        ),
        (
            "bomb_1mib_loose",
            input([0x00, 0, 0, 0], &[], vec![vec![op(op::BOMB, 31)]]),
        ),
        (
            "bomb_32kib_tight",
            input([0x21, 0, 0, 0], &[], vec![vec![op(op::BOMB, 0)]]),
        ),
        (
            "bomb_fragmented_tight",
            input([0x20, 0, 0, 0], &[], vec![msg(15, 0x06, b"a")]),
        ),
        (
            "rsv1_on_ping",
            input([0x00, 0, 0, 0], &[], vec![frame(0xC9, b"ping")]),
        ),
        (
            "rsv1_on_close",
            input([0x01, 0, 0, 0], &[], vec![frame(0xC8, &[0x03, 0xe8])]),
        ),
        (
            "rsv1_on_continuation",
            input([0x00, 0, 0, 0], &[], vec![msg(4, 0x22, json)]),
        ),
        (
            "rsv1_on_uncompressed_continuation",
            input(
                [0x00, 0, 0, 0],
                &[],
                vec![frame(0x41, &rfc_hello), frame(0xC0, b"Hello")],
            ),
        ),
        (
            "compressed_invalid_utf8",
            input(
                [0x00, 0, 0, 0],
                &[],
                vec![msg(2, 0x01, &[0x61, 0xff, 0xfe])],
            ),
        ),
        (
            "garbage_compressed",
            input(
                [0x00, 0, 0, 0],
                &[],
                vec![vec![op(op::GARBAGE, 1), 5, 0xff, 0xff, 0xff, 0xff, 0xff]],
            ),
        ),
        (
            "peer_compressor",
            input(
                [0x00, 0, 0, 0x10],
                &[],
                vec![
                    msg(2, 0x01, json),
                    msg(2, 0x01, json),
                    msg(3, 0x00, json),
                    close.clone(),
                ],
            ),
        ),
        (
            "peer_compressor_fragments_tight",
            input(
                [0x21, 0x8A, 0x8B, 0x30],
                &[],
                vec![msg(3, 0x01, json), msg(2, 0x00, json), close.clone()],
            ),
        ),
        (
            "peer_bomb_no_context_takeover",
            input(
                [0x1E, 0, 0, 0x10],
                &[],
                vec![vec![op(op::BOMB, 1)], msg(2, 0x01, json)],
            ),
        ),
        // The peer's close without a body: the reply has none either.
        (
            "empty_close",
            input(
                [0x00, 0, 0, 0],
                &[],
                vec![msg(1, 0x01, json), frame(0x88, &[])],
            ),
        ),
        // Finding D1 (a text message over the limit with invalid UTF-8 before it): 1009 in
        // one piece, 1007 one byte at a time. Fixed: 1007 either way.
        (
            "utf8_before_limit_D1",
            vec![
                0x2d, 0x00, 0x00, 0x00, 0x2c, 0x05, 0xff, 0xff, 0x3f, 0xff, 0xff, 0xff,
            ],
        ),
        (
            "ping_pong_uncompressed_between",
            input(
                [0x01, 0, 0, 0],
                &[],
                vec![
                    vec![op(op::PING, 2), b'h', b'i'],
                    vec![op(op::PONG, 0)],
                    msg(0, 0x41, b"plain"),
                    msg(4, 0x01, b"compressed"),
                    close.clone(),
                ],
            ),
        ),
    ]
}

/// Splits a frames-target input into its `[cfg][lens][schedules]` prefix and the data.
fn split_prefix(input: &[u8]) -> (Vec<u8>, &[u8]) {
    let i = crate::Input::split(input);
    let n = input.len() - i.data.len();
    (input[..n].to_vec(), i.data)
}
