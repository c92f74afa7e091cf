"""The Asterisk side of an AudioSocket connection, for tests, benchmarks and caller emulation.

It speaks the wire exactly as Asterisk 22 does (UUID first, slin frames, 0x03 digits, TCP close
as hangup), so the server can be exercised without Asterisk where Asterisk is not the point.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import uuid

from audiosocket import protocol as p


class AudioSocketClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, call_id: uuid.UUID) -> None:
        self.call_id = call_id
        self._reader = reader
        self._writer = writer
        self._decoder = p.AudioSocketDecoder(expect_uuid_first=False)

    @classmethod
    async def connect(cls, host: str, port: int, call_id: uuid.UUID | None = None, *, send_uuid: bool = True) -> AudioSocketClient:
        reader, writer = await asyncio.open_connection(host, port)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client = cls(reader, writer, call_id or uuid.uuid4())
        if send_uuid:
            await client.send_raw(p.encode_uuid(client.call_id))
        return client

    async def send_raw(self, data: bytes) -> None:
        self._writer.write(data)
        await self._writer.drain()

    async def send_audio(self, pcm: bytes, sample_rate: int) -> None:
        await self.send_raw(p.encode_audio(pcm, sample_rate))

    async def send_dtmf(self, digit: str) -> None:
        await self.send_raw(p.encode_dtmf(digit))

    async def send_hangup(self) -> None:
        await self.send_raw(p.encode_hangup())

    async def recv(self, timeout: float = 5.0) -> p.Event:
        """Next frame from the server; Closed once it closed the connection."""

        async def _next() -> p.Event:
            while True:
                ev = self._decoder.next_event()
                if ev is not p.NEED_DATA:
                    return ev
                try:
                    data = await self._reader.read(65536)
                except ConnectionError:
                    data = b""
                self._decoder.receive_data(data)

        return await asyncio.wait_for(_next(), timeout)

    def reset(self) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0): a crashed peer or a middlebox, not a hangup."""
        sock = self._writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def close(self) -> None:
        """Hang up the way Asterisk does: a TCP close without a 0x00 frame."""
        self._writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._writer.wait_closed(), 1.0)
