"""A caller emulator that behaves like Asterisk on the AudioSocket wire.

It connects with a UUID, sends the caller's audio as paced frames (20 ms by default, on a
monotonic deadline, like a real channel), optionally through an 8 kHz G.711 telephone channel,
and records every frame the agent sends with its arrival time. From that timeline it measures at
the wire: when the agent's voice starts and stops, voice-to-voice latency and barge-in stop time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from dataclasses import dataclass, field

from audiosocket import protocol as p
from audiosocket.client import AudioSocketClient
from media.pcm import frame_bytes, rms_dbfs, telephone_channel

VOICED_DBFS = -45.0  # a frame louder than this carries agent speech (TTS is levelled to -18)


@dataclass
class Received:
    t: float
    pcm: bytes
    voiced: bool


@dataclass
class CallerEmulator:
    host: str
    port: int
    rate: int = 16000
    frame_ms: float = 20.0
    law: str | None = "ulaw"  # pass caller audio through a G.711 phone line; None = clean
    call_id: uuid.UUID = field(default_factory=uuid.uuid4)
    received: list[Received] = field(default_factory=list)
    sent_voiced: list[tuple[float, float]] = field(default_factory=list)  # (start, end) of caller speech
    hung_up_by_agent: bool = False

    async def __aenter__(self) -> CallerEmulator:
        self.client = await AudioSocketClient.connect(self.host, self.port, self.call_id)
        self._recv = asyncio.create_task(self._receive())
        self._next = time.monotonic()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._recv.cancel()
        with contextlib.suppress(BaseException):
            await self._recv
        await self.client.close()

    async def _receive(self) -> None:
        while True:
            ev = await self.client.recv(timeout=3600)
            if isinstance(ev, p.Audio):
                self.received.append(Received(time.monotonic(), ev.pcm, rms_dbfs(ev.pcm) > VOICED_DBFS))
            elif isinstance(ev, (p.Hangup, p.Closed)):
                self.hung_up_by_agent = isinstance(ev, p.Hangup)
                return

    @property
    def ended(self) -> bool:
        return self._recv.done()

    async def _send_frames(self, pcm: bytes) -> None:
        n = frame_bytes(self.rate, self.frame_ms)
        pcm = pcm + bytes(-len(pcm) % n)
        for i in range(0, len(pcm), n):
            if self.ended:
                return
            self._next = max(self._next, time.monotonic() - 0.1)  # never burst a backlog
            await asyncio.sleep(max(0.0, self._next - time.monotonic()))
            with contextlib.suppress(ConnectionError):
                await self.client.send_audio(pcm[i : i + n], self.rate)
            self._next += self.frame_ms / 1000.0

    async def say(self, pcm: bytes) -> tuple[float, float]:
        """Send speech (slin at `rate`) in real time; returns (first, last) frame send times."""
        if self.law:
            pcm = telephone_channel(pcm, self.rate, self.law)
        t0 = time.monotonic()
        await self._send_frames(pcm)
        span = (t0, time.monotonic())
        self.sent_voiced.append(span)
        return span

    async def silence(self, seconds: float) -> None:
        await self._send_frames(bytes(frame_bytes(self.rate, seconds * 1000)))

    async def wait_agent_done(self, since: float = 0.0, *, quiet_s: float = 0.6, timeout: float = 30.0) -> bool:
        """Send silence until the agent has spoken (after `since`) and then been quiet `quiet_s`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not self.ended:
            await self.silence(0.1)
            last = next((r.t for r in reversed(self.received) if r.voiced and r.t >= since), None)
            if last is not None and time.monotonic() - last >= quiet_s:
                return True
        return False

    # --- wire-level measurements ---
    def agent_audio(self, since: float = 0.0) -> bytes:
        return b"".join(r.pcm for r in self.received if r.t >= since)

    def first_voiced_after(self, t: float) -> float | None:
        return next((r.t for r in self.received if r.t >= t and r.voiced), None)

    def last_voiced_before(self, t: float) -> float | None:
        vs = [r.t for r in self.received if r.t <= t and r.voiced]
        return vs[-1] if vs else None

    def voiced_spans(self, gap_s: float = 0.3) -> list[tuple[float, float]]:
        """Agent talk spurts: voiced frames merged across gaps shorter than `gap_s`."""
        spans: list[list[float]] = []
        for r in self.received:
            if not r.voiced:
                continue
            if spans and r.t - spans[-1][1] <= gap_s:
                spans[-1][1] = r.t
            else:
                spans.append([r.t, r.t])
        return [(a, b) for a, b in spans]
