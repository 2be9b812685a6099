"""permessage-deflate interop peer for stdws, using the Python `websockets` library.

    python interop.py client URL [--count N] [--size BYTES]...
    python interop.py server PORT

client: connects to URL with websockets' default compression (permessage-deflate offered),
fails unless the server's Sec-WebSocket-Extensions names permessage-deflate, sends COUNT
JSON-like text messages of about each SIZE (default 200 and 2048; deterministic, seeded
generator), one at a time, and checks that each echo equals what was sent. It counts the
socket's bytes after the handshake, so the printed wire/plain ratio shows whether the
messages really went compressed in each direction (frame headers included).

server: an echo server on 127.0.0.1:PORT with websockets' default compression (which asks
for 12-bit windows both ways); prints "ready" once listening and serves until killed.

Exit status: 0 when every echo matched, 1 otherwise (the error on stderr).
Used by benches/interop/run.
"""

import json
import random
import socket
import sys
from urllib.parse import urlsplit

from websockets.sync.client import connect
from websockets.sync.server import serve


class CountingSocket(socket.socket):
    """A TCP socket that counts the bytes it moves, for the wire/plain ratio."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sent = 0
        self.received = 0

    def recv(self, bufsize, *args):
        data = super().recv(bufsize, *args)
        self.received += len(data)
        return data

    def sendall(self, data, *args):
        super().sendall(data, *args)
        self.sent += len(data)

    def send(self, data, *args):
        n = super().send(data, *args)
        self.sent += n
        return n


FIRST = ["Ana", "Bilal", "Carmen", "Dario", "Elif", "Farid", "Greta", "Hiro", "Iris", "Jomo"]
LAST = ["Ferreira", "Yilmaz", "Berg", "Sato", "Mensah", "Rossi", "Dubois", "Kim"]
EVENTS = ["login", "logout", "purchase", "refund", "view", "search"]
DEVICES = ["ios", "android", "web", "desktop"]


def messages(rng, size, count):
    """COUNT deterministic JSON texts of about SIZE bytes: user events with a nested list."""
    out = []
    for seq in range(1, count + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        doc = {
            "event": rng.choice(EVENTS),
            "seq": seq,
            "at": "2026-11-21T%02d:%02d:%02d.%03dZ"
            % (rng.randrange(24), rng.randrange(60), rng.randrange(60), rng.randrange(1000)),
            "user": {"id": rng.randrange(10**6), "name": f"{first} {last}",
                     "email": f"{first.lower()}.{last.lower()}@example.org"},
            "device": rng.choice(DEVICES),
            "history": [],
        }
        while True:
            entry = {"ts": 1795000000 + rng.randrange(10**6), "kind": rng.choice(EVENTS),
                     "score": round(rng.random() * 100, 2), "ok": rng.random() < 0.8}
            doc["history"].append(entry)
            if len(json.dumps(doc, separators=(",", ":"))) > size:
                doc["history"].pop()
                break
        out.append(json.dumps(doc, separators=(",", ":")))
    return out


def run_client(url, count, sizes):
    parts = urlsplit(url)
    for size in sizes:
        sock = CountingSocket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.connect((parts.hostname, parts.port or 80))
        with connect(url, sock=sock, ping_interval=None) as ws:
            ext = ws.response.headers.get("Sec-WebSocket-Extensions", "")
            if "permessage-deflate" not in ext:
                raise SystemExit(f"python client: permessage-deflate not negotiated "
                                 f"(Sec-WebSocket-Extensions: {ext!r})")
            sent0, recv0 = sock.sent, sock.received
            msgs = messages(random.Random(size), size, count)
            for m in msgs:
                ws.send(m)
                echo = ws.recv()
                if echo != m:
                    raise SystemExit(f"python client: echo differs at size {size}: "
                                     f"sent {len(m)} B, got {len(echo)} B")
            plain = sum(len(m) for m in msgs)
            sent, recv = sock.sent - sent0, sock.received - recv0
        print(f"python websockets client -> {url}: size~{size} B, {count} echoes equal; "
              f"Sec-WebSocket-Extensions: {ext}; mean {plain / count:.0f} B; "
              f"wire/plain sent {sent / plain:.3f}, received {recv / plain:.3f}")


def run_server(port):
    def echo(ws):
        for message in ws:
            ws.send(message)

    with serve(echo, "127.0.0.1", port, ping_interval=None) as server:
        print("ready", flush=True)
        server.serve_forever()


def main(argv):
    if len(argv) >= 2 and argv[0] == "server":
        run_server(int(argv[1]))
        return
    if len(argv) < 2 or argv[0] != "client":
        raise SystemExit(__doc__)
    url, count, sizes, rest = argv[1], 500, [], argv[2:]
    while rest:
        opt, val, rest = rest[0], rest[1], rest[2:]
        if opt == "--count":
            count = int(val)
        elif opt == "--size":
            sizes.append(int(val))
        else:
            raise SystemExit(f"unknown option {opt}")
    run_client(url, count, sizes or [200, 2048])


if __name__ == "__main__":
    main(sys.argv[1:])
