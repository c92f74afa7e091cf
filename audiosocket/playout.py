"""Paced playout of agent audio onto the AudioSocket wire.

Two layers, so the bookkeeping can be tested without time or sockets:
- `PlayoutBuffer` (pure): segments of audio are captured (ahead of real time), flushed and
  cleared; `next_frame()` hands out exactly one wire frame and reports how much of each segment
  really went out.
- `Playout` (asyncio): sends one frame per period on a monotonic deadline (`next += period`, no
  drift from `sleep(0.02)` loops), and lets callers await a segment's report.

A segment is one spoken reply. Barge-in calls `clear()`: queued audio is dropped at once, the
next tick is silence, and the report says how many milliseconds the caller actually heard.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

from media.clock import Clock
from media.pcm import duration_ms

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PlayoutReport:
    """What happened to one segment: bytes queued, bytes that reached the wire, interrupted?"""

    segment_id: int
    queued_bytes: int
    played_bytes: int
    played_ms: float
    interrupted: bool


@dataclass(slots=True)
class _Segment:
    id: int
    chunks: deque[bytes] = field(default_factory=deque)
    pending: int = 0  # bytes captured but not yet sent
    queued: int = 0  # bytes ever captured
    played: int = 0
    flushed: bool = False


@dataclass(frozen=True, slots=True)
class Frame:
    """One wire frame and the segments it finished (if any)."""

    pcm: bytes
    voiced: bool  # True when it carries segment audio, False for fill silence
    finished: tuple[PlayoutReport, ...] = ()
    segment_id: int | None = None  # the segment this frame's audio belongs to


class PlayoutBuffer:
    """Pure playout bookkeeping; no clock, no I/O."""

    def __init__(self, sample_rate: int, frame_bytes: int) -> None:
        if frame_bytes <= 0 or frame_bytes % 2:
            raise ValueError(f"frame_bytes must be a positive even number, got {frame_bytes}")
        self.sample_rate = sample_rate
        self.frame_bytes = frame_bytes
        self._silence = bytes(frame_bytes)
        self._segments: deque[_Segment] = deque()
        self._next_id = 1
        self.underruns = 0  # ticks where an open segment had no audio ready
        self.paused = False  # hold the queue and send silence (caller may be barging in)

    # --- producer side ---
    def capture(self, pcm: bytes) -> int:
        """Queue audio on the open segment (opening one if needed); returns the segment id."""
        if len(pcm) % 2:
            raise ValueError(f"slin audio must have an even number of bytes, got {len(pcm)}")
        seg = self._open_segment()
        if pcm:
            seg.chunks.append(pcm)
            seg.pending += len(pcm)
            seg.queued += len(pcm)
        return seg.id

    def flush(self) -> int | None:
        """Close the open segment: its tail is padded and it finishes once fully sent.

        Returns the closed segment id, or None if nothing was open. A flushed empty segment
        finishes on the next tick, so awaiting it never hangs.
        """
        if self._segments and not self._segments[-1].flushed:
            seg = self._segments[-1]
            seg.flushed = True
            return seg.id
        return None

    def clear(self) -> list[PlayoutReport]:
        """Drop everything queued now. The segment being played is reported as interrupted."""
        reports = [self._report(seg, interrupted=seg.pending > 0 or not seg.flushed) for seg in self._segments]
        self._segments.clear()
        return reports

    # --- wire side ---
    def next_frame(self) -> Frame:
        """Exactly one frame of audio: segment audio, the padded tail of a segment, or silence."""
        finished: list[PlayoutReport] = []
        if self.paused:
            return Frame(self._silence, False)
        while self._segments:
            seg = self._segments[0]
            if seg.pending >= self.frame_bytes or (seg.flushed and seg.pending > 0):
                pcm = self._take(seg, min(self.frame_bytes, seg.pending))
                if len(pcm) < self.frame_bytes:
                    pcm += bytes(self.frame_bytes - len(pcm))
                if seg.flushed and seg.pending == 0:
                    self._segments.popleft()
                    finished.append(self._report(seg, interrupted=False))
                return Frame(pcm, True, tuple(finished), seg.id)
            if seg.flushed:  # flushed and empty: finish it and look at the next one
                self._segments.popleft()
                finished.append(self._report(seg, interrupted=False))
                continue
            self.underruns += 1  # open segment starved: the producer is behind real time
            break
        return Frame(self._silence, False, tuple(finished))

    @property
    def pending_bytes(self) -> int:
        return sum(s.pending for s in self._segments)

    @property
    def pending_ms(self) -> float:
        return duration_ms(self.pending_bytes, self.sample_rate)

    @property
    def active(self) -> bool:
        return bool(self._segments)

    def _open_segment(self) -> _Segment:
        if not self._segments or self._segments[-1].flushed:
            self._segments.append(_Segment(self._next_id))
            self._next_id += 1
        return self._segments[-1]

    def _take(self, seg: _Segment, n: int) -> bytes:
        out = bytearray()
        while len(out) < n:
            chunk = seg.chunks[0]
            need = n - len(out)
            if len(chunk) <= need:
                out += seg.chunks.popleft()
            else:
                out += chunk[:need]
                seg.chunks[0] = chunk[need:]
        seg.pending -= n
        seg.played += n
        return bytes(out)

    def _report(self, seg: _Segment, interrupted: bool) -> PlayoutReport:
        return PlayoutReport(seg.id, seg.queued, seg.played, duration_ms(seg.played, self.sample_rate), interrupted)


SendFrame = Callable[[bytes], Awaitable[None]]


class Playout:
    """Sends one frame per period on a monotonic deadline and resolves segment reports.

    `send` gets raw slin for one frame (the session wraps it in an AudioSocket frame). When
    idle it sends silence (keeps Asterisk's side fed; a silent AudioSocket peer can wedge the
    channel) unless `idle_silence=False`.
    """

    def __init__(
        self,
        clock: Clock,
        sample_rate: int,
        frame_ms: float,
        send: SendFrame,
        *,
        idle_silence: bool = True,
        max_lag_frames: int = 5,
    ) -> None:
        self.clock = clock
        self.frame_ms = frame_ms
        self.period = frame_ms / 1000.0
        self.buffer = PlayoutBuffer(sample_rate, int(round(sample_rate * frame_ms / 1000.0)) * 2)
        self._send = send
        self._idle_silence = idle_silence
        self._max_lag = max_lag_frames * self.period
        self._waiters: dict[int, asyncio.Future[PlayoutReport]] = {}
        self._done: dict[int, PlayoutReport] = {}
        self.frames_sent = 0
        self.voiced_frames_sent = 0
        self.late_resets = 0  # times the pacer fell behind by more than max_lag and re-anchored
        self.last_voiced_at: float | None = None  # clock time the last voiced frame was sent
        self._first_sent: dict[int, float] = {}  # segment id -> when its first frame went out

    @property
    def sample_rate(self) -> int:
        return self.buffer.sample_rate

    def capture(self, pcm: bytes) -> int:
        return self.buffer.capture(pcm)

    def flush(self) -> int | None:
        return self.buffer.flush()

    def pause(self) -> None:
        """Hold queued audio and send silence from the next tick: the caller may be barging in.
        `resume()` continues exactly where it stopped (nothing lost); `clear()` drops it."""
        self.buffer.paused = True

    def resume(self) -> None:
        self.buffer.paused = False

    @property
    def paused(self) -> bool:
        return self.buffer.paused

    def clear(self) -> list[PlayoutReport]:
        """Stop now: the next tick is silence. Returns the reports of every dropped segment."""
        self.buffer.paused = False
        reports = self.buffer.clear()
        for r in reports:
            self._resolve(r)
        return reports

    def first_sent_at(self, segment_id: int) -> float | None:
        """Clock time the segment's first frame went on the wire (wire-level latency)."""
        return self._first_sent.get(segment_id)

    @property
    def speaking(self) -> bool:
        """True while agent audio is queued or playing."""
        return self.buffer.active

    async def wait(self, segment_id: int) -> PlayoutReport:
        """Wait until a flushed segment has been fully sent (or cleared)."""
        if segment_id in self._done:
            return self._done.pop(segment_id)
        fut = self._waiters.get(segment_id)
        if fut is None:
            fut = asyncio.get_running_loop().create_future()
            self._waiters[segment_id] = fut
        report = await asyncio.shield(fut)
        self._done.pop(segment_id, None)  # handed out (a waiter cancelled first leaves it for report_now)
        return report

    def report_now(self, segment_id: int) -> PlayoutReport | None:
        """The segment's report if it is already resolved (played out or cleared) and not yet
        handed out, else None; never waits. For a waiter being cancelled that must still say
        what the caller heard."""
        return self._done.pop(segment_id, None)

    async def play(self, pcm: bytes) -> PlayoutReport:
        """Queue one whole segment and wait for it to be played (or interrupted)."""
        self.capture(pcm)
        seg_id = self.flush()
        assert seg_id is not None
        return await self.wait(seg_id)

    async def run(self) -> None:
        """The pacing loop; runs until cancelled. Frame k goes out at t0 + k * period."""
        deadline = self.clock.now()
        while True:
            frame = self.buffer.next_frame()
            if frame.voiced or self._idle_silence:
                try:
                    await self._send(frame.pcm)
                except BaseException:
                    # The wire failed (the caller hung up) or playout was cancelled mid-send: the
                    # segments this frame finished are out of the buffer, so clear() can no
                    # longer report them, and whoever waits on one would wait forever.
                    for r in frame.finished:
                        self._resolve(replace(r, interrupted=True))
                    raise
                self.frames_sent += 1
            if frame.voiced:
                self.voiced_frames_sent += 1
                self.last_voiced_at = self.clock.now()
                if frame.segment_id is not None and frame.segment_id not in self._first_sent:
                    self._first_sent[frame.segment_id] = self.last_voiced_at
                    if len(self._first_sent) > 256:
                        self._first_sent.pop(next(iter(self._first_sent)))
            for r in frame.finished:
                self._resolve(r)
            deadline += self.period
            now = self.clock.now()
            if now - deadline > self._max_lag:
                # Starved of CPU or blocked on the socket: re-anchor instead of bursting a backlog.
                self.late_resets += 1
                log.debug("playout fell %.0f ms behind; re-anchoring", (now - deadline) * 1000)
                deadline = now
            await self.clock.sleep_until(deadline)

    def _resolve(self, report: PlayoutReport) -> None:
        fut = self._waiters.pop(report.segment_id, None)
        if fut is not None and not fut.done():
            fut.set_result(report)
        self._done[report.segment_id] = report  # until handed out: by wait(), or by report_now()
        if len(self._done) > 256:  # nobody asks for old segments: keep memory bounded
            self._done.pop(next(iter(self._done)))
