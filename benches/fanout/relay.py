"""The pub/sub contract of examples/pubsub.rs on Python `websockets` (asyncio), the way its
docs broadcast: `websockets.asyncio.server.broadcast(clients, message)` to the set of
clients of the message's topic (the request path), the sender included. broadcast() has no
backpressure (its docs say so): a client that does not read has everything buffered for it
until the keep-alive ping times out (20 s + 20 s by default).

    python relay.py [ADDR]        # default 127.0.0.1:9002
"""

import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

topics = {}


async def handler(websocket):
    topic = websocket.request.path
    members = topics.setdefault(topic, set())
    members.add(websocket)
    try:
        async for message in websocket:
            broadcast(members, message)
    finally:
        members.discard(websocket)
        if not members and topics.get(topic) is members:
            del topics[topic]


async def main(addr):
    host, _, port = addr.rpartition(":")
    async with serve(handler, host, int(port)) as server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9002"))
