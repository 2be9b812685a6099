// The pub/sub contract of examples/pubsub.rs on node `ws` 8, the way ws's README broadcasts:
// `for (const c of clients) c.send(data, { binary })`, one `Set` of clients per topic (the
// request path), the sender included. A client with more than 1 MiB waiting in
// `bufferedAmount` (it does not read fast enough) is terminated instead of sent to.
//
//   node relay.js [ADDR]        # default 127.0.0.1:9002
'use strict';
const { WebSocketServer, WebSocket } = require('ws');

const LIMIT = 1 << 20;
const addr = process.argv[2] || '127.0.0.1:9002';
const colon = addr.lastIndexOf(':');
const host = addr.slice(0, colon);
const port = Number(addr.slice(colon + 1));

const topics = new Map();
const server = new WebSocketServer({ host, port });

server.on('connection', (socket, request) => {
  const topic = request.url;
  let members = topics.get(topic);
  if (members === undefined) {
    members = new Set();
    topics.set(topic, members);
  }
  members.add(socket);
  socket.on('error', () => {});
  socket.on('message', (data, isBinary) => {
    for (const c of members) {
      if (c.readyState !== WebSocket.OPEN) continue;
      if (c.bufferedAmount > LIMIT) {
        c.terminate();
        continue;
      }
      c.send(data, { binary: isBinary });
    }
  });
  socket.on('close', () => {
    members.delete(socket);
    if (members.size === 0 && topics.get(topic) === members) topics.delete(topic);
  });
});
