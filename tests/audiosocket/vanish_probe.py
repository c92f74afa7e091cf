"""A peer that vanishes mid-call, for tests/audiosocket/test_peer_vanished.py: run inside a
throwaway network namespace (its own loopback, its own nftables), never on the host's network.

An AudioSocket server and a raw peer speaking Asterisk's side talk over loopback; after
`--talk` seconds an nftables rule drops every packet of the connection both ways (no FIN, no
RST: a host lost to power or a cut link) and the peer goes quiet. Prints one JSON line: how the
server's session ended and how long after the cut.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid

from audiosocket import protocol as p
from audiosocket.server import AudioSocketServer, CallEnded, CallSession
from devtools.netns import dropping


async def probe(peer_timeout: float, talk_s: float, wait_s: float) -> dict[str, object]:
    ended: asyncio.Future[tuple[str, float]] = asyncio.get_running_loop().create_future()

    async def handler(session: CallSession) -> None:
        while True:
            item = await session.receive()
            if isinstance(item, CallEnded):
                ended.set_result((item.reason.value, time.monotonic()))
                return

    server = AudioSocketServer(handler, "127.0.0.1", 0, peer_timeout=peer_timeout)
    await server.start()
    _, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(p.encode_uuid(uuid.uuid4()))
    frame = p.encode_audio(bytes(640), 16000)  # 20 ms of slin16, as Asterisk sends
    for _ in range(round(talk_s / 0.02)):
        writer.write(frame)
        await asyncio.sleep(0.02)
    with dropping(ports=[server.port]):
        cut = time.monotonic()
        try:
            reason, at = await asyncio.wait_for(asyncio.shield(ended), wait_s)
            result: dict[str, object] = {"reason": reason, "after_s": round(at - cut, 2)}
        except TimeoutError:
            result = {"reason": None, "after_s": None, "sessions_open": len(server.sessions)}
    writer.transport.abort()
    await server.close(grace=0.5)
    return result


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--peer-timeout", type=float, required=True)
    ap.add_argument("--talk", type=float, default=0.5)
    ap.add_argument("--wait", type=float, required=True)
    args = ap.parse_args()
    print(json.dumps(asyncio.run(probe(args.peer_timeout, args.talk, args.wait))))


if __name__ == "__main__":
    main()
