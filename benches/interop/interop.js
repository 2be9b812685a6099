// permessage-deflate interop peer for stdws, using the Node `ws` library.
//
//     node interop.js client URL [--count N] [--size BYTES]...
//     node interop.js server PORT
//
// client: connects with permessage-deflate offered (`ws` offers it by default on clients;
// its default threshold of 1024 bytes is lowered to 64 here, stdws's default, so that
// ~200 B messages are compressed too), fails unless the server's Sec-WebSocket-Extensions
// names permessage-deflate, sends COUNT JSON-like text messages of about each SIZE (default
// 200 and 2048; a deterministic generator), one at a time, and checks each echo. The TCP
// socket's byte counters after the handshake give the wire/plain ratio per direction
// (frame headers included), which shows whether messages really went compressed.
//
// server: an echo server on 127.0.0.1:PORT. `ws` servers do NOT negotiate compression
// unless `perMessageDeflate` is set, so it is set here (threshold 64). Prints "ready" once
// listening and serves until killed.
//
// Exit status: 0 when every echo matched, 1 otherwise (the error on stderr).
// Used by benches/interop/run.

'use strict';

const { WebSocket, WebSocketServer } = require('ws');

const DEFLATE = { threshold: 64 };

const NAMES = ['Aino', 'Bao', 'Céline', 'Diego', 'Esra', 'Femi', 'Goran', 'Hye-jin', 'Ivo'];
const ACTIONS = ['created', 'updated', 'deleted', 'archived', 'restored'];
const LABELS = ['urgent', 'backend', 'ui', 'docs', 'infra', 'triage', 'wontfix'];

// A small deterministic generator (32-bit LCG); returns an integer below n.
function rng(seed) {
  let s = seed >>> 0;
  return (n) => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s % n;
  };
}

// COUNT JSON texts of about SIZE bytes: ticket events with a nested list of comments.
function messages(size, count) {
  const r = rng(size);
  const out = [];
  for (let seq = 1; seq <= count; seq++) {
    const doc = {
      ticket: 1000 + r(9000),
      action: ACTIONS[r(ACTIONS.length)],
      seq,
      at: new Date(Date.UTC(2026, 10, 21, r(24), r(60), r(60), r(1000))).toISOString(),
      by: { id: r(100000), name: NAMES[r(NAMES.length)] },
      labels: [LABELS[r(LABELS.length)], LABELS[r(LABELS.length)]],
      comments: [],
    };
    for (;;) {
      doc.comments.push({
        id: r(1e6),
        author: NAMES[r(NAMES.length)],
        votes: r(50),
        resolved: r(2) === 1,
      });
      if (JSON.stringify(doc).length > size) {
        doc.comments.pop();
        break;
      }
    }
    out.push(JSON.stringify(doc));
  }
  return out;
}

function fail(msg) {
  console.error(`node ws: ${msg}`);
  process.exit(1);
}

function clientOne(url, size, count) {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { perMessageDeflate: DEFLATE });
    let ext = '';
    let socket = null;
    ws.on('upgrade', (res) => {
      ext = res.headers['sec-websocket-extensions'] || '';
      socket = res.socket;
    });
    ws.on('error', (e) => fail(`client error at size ${size}: ${e.message}`));
    ws.on('open', () => {
      if (!ext.includes('permessage-deflate')) {
        fail(`permessage-deflate not negotiated (Sec-WebSocket-Extensions: ${JSON.stringify(ext)})`);
      }
      const msgs = messages(size, count);
      const plain = msgs.reduce((a, m) => a + Buffer.byteLength(m), 0);
      const read0 = socket.bytesRead;
      const written0 = socket.bytesWritten;
      let i = 0;
      ws.on('message', (data, isBinary) => {
        const echo = data.toString();
        if (isBinary || echo !== msgs[i]) {
          fail(`echo differs at size ${size}, message ${i}: sent ${msgs[i].length} B, got ${echo.length} B`);
        }
        i += 1;
        if (i < count) {
          ws.send(msgs[i]);
          return;
        }
        const sent = socket.bytesWritten - written0;
        const recv = socket.bytesRead - read0;
        console.log(
          `node ws client -> ${url}: size~${size} B, ${count} echoes equal; ` +
            `Sec-WebSocket-Extensions: ${ext}; mean ${(plain / count).toFixed(0)} B; ` +
            `wire/plain sent ${(sent / plain).toFixed(3)}, received ${(recv / plain).toFixed(3)}`
        );
        ws.close(1000, 'done');
      });
      ws.on('close', () => resolve());
      ws.send(msgs[0]);
    });
  });
}

async function main(argv) {
  if (argv[0] === 'server' && argv[1]) {
    const wss = new WebSocketServer({ host: '127.0.0.1', port: Number(argv[1]), perMessageDeflate: DEFLATE });
    wss.on('connection', (ws) => {
      ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
      ws.on('error', (e) => console.error(`node ws server: ${e.message}`));
    });
    wss.on('listening', () => console.log('ready'));
    return;
  }
  if (argv[0] !== 'client' || !argv[1]) {
    fail('usage: node interop.js client URL [--count N] [--size BYTES]... | server PORT');
  }
  const url = argv[1];
  let count = 500;
  const sizes = [];
  for (let i = 2; i < argv.length; i += 2) {
    if (argv[i] === '--count') count = Number(argv[i + 1]);
    else if (argv[i] === '--size') sizes.push(Number(argv[i + 1]));
    else fail(`unknown option ${argv[i]}`);
  }
  for (const size of sizes.length ? sizes : [200, 2048]) {
    await clientOne(url, size, count);
  }
}

main(process.argv.slice(2));
