"""Playout: pure segment bookkeeping, then deadline pacing on virtual time."""

from __future__ import annotations

import asyncio

import pytest

from media.clock import ManualClock
from audiosocket.playout import Playout, PlayoutBuffer, PlayoutReport

FB = 640  # 20 ms at 16 kHz


def _pcm(n: int, value: int = 1) -> bytes:
    return value.to_bytes(2, "little", signed=True) * (n // 2)


def test_frames_are_exact_size_and_tail_is_padded() -> None:
    b = PlayoutBuffer(16000, FB)
    sid = b.capture(_pcm(FB * 2 + 100))
    b.flush()
    f1, f2, f3 = b.next_frame(), b.next_frame(), b.next_frame()
    assert [len(f.pcm) for f in (f1, f2, f3)] == [FB, FB, FB]
    assert f1.voiced and f2.voiced and f3.voiced and not f2.finished
    assert f3.pcm[:100] == _pcm(100) and f3.pcm[100:] == bytes(FB - 100)
    (rep,) = f3.finished
    assert rep.segment_id == sid and rep.played_bytes == FB * 2 + 100 and not rep.interrupted
    f4 = b.next_frame()
    assert not f4.voiced and f4.pcm == bytes(FB)


def test_capture_in_odd_chunks_reassembles_in_order() -> None:
    b = PlayoutBuffer(16000, FB)
    data = bytes(range(256)) * 10  # 2560 bytes = 4 frames
    for i in range(0, len(data), 38):
        b.capture(data[i : i + 38])
    b.flush()
    out = b"".join(b.next_frame().pcm for _ in range(4))
    assert out == data


def test_open_segment_underrun_sends_silence_without_consuming_partial() -> None:
    b = PlayoutBuffer(16000, FB)
    b.capture(_pcm(100))
    f = b.next_frame()
    assert not f.voiced and b.underruns == 1 and b.pending_bytes == 100
    b.capture(_pcm(FB - 100))
    assert b.next_frame().voiced


def test_clear_reports_what_was_heard_and_drops_queue() -> None:
    b = PlayoutBuffer(16000, FB)
    first = b.capture(_pcm(FB * 10))
    b.flush()
    second = b.capture(_pcm(FB * 5))
    b.flush()
    for _ in range(3):
        b.next_frame()
    reports = b.clear()
    assert [(r.segment_id, r.played_bytes, r.interrupted) for r in reports] == [(first, FB * 3, True), (second, 0, True)]
    assert reports[0].played_ms == pytest.approx(60.0)
    assert not b.active and b.pending_bytes == 0
    assert not b.next_frame().voiced  # the very next frame is silence: stop within one frame


def test_empty_flushed_segment_finishes() -> None:
    b = PlayoutBuffer(8000, 320)
    sid = b.capture(b"")
    b.flush()
    f = b.next_frame()
    assert not f.voiced and [r.segment_id for r in f.finished] == [sid]


def test_flush_without_open_segment_is_none_and_bad_input_rejected() -> None:
    b = PlayoutBuffer(8000, 320)
    assert b.flush() is None
    with pytest.raises(ValueError, match="even"):
        b.capture(b"\x00")
    with pytest.raises(ValueError, match="positive even"):
        PlayoutBuffer(8000, 321)


async def test_pacer_sends_on_exact_deadlines_and_reports() -> None:
    clock = ManualClock(start=100.0)
    sent: list[tuple[float, bytes]] = []

    async def send(frame: bytes) -> None:
        sent.append((clock.now(), frame))

    pl = Playout(clock, 16000, 20.0, send)
    task = asyncio.create_task(pl.run())
    play = asyncio.create_task(pl.play(_pcm(FB * 5)))
    await clock.run(until=play.done, limit=5)
    report = play.result()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert report.played_bytes == FB * 5 and not report.interrupted
    times = [t for t, _ in sent]
    assert times[0] == 100.0
    assert all(b - a == pytest.approx(0.020) for a, b in zip(times, times[1:]))
    assert [f for _, f in sent if f != bytes(FB)] == [_pcm(FB)] * 5
    assert pl.voiced_frames_sent == 5
    first_voiced = next(t for t, f in sent if f != bytes(FB))
    assert pl.first_sent_at(report.segment_id) == first_voiced


async def test_pacer_re_anchors_after_a_stall_instead_of_bursting() -> None:
    clock = ManualClock(start=0.0)
    sent: list[float] = []

    async def send(frame: bytes) -> None:
        sent.append(clock.now())
        if len(sent) == 3:
            clock.advance(0.5)  # the socket blocked for half a second

    pl = Playout(clock, 8000, 20.0, send)
    task = asyncio.create_task(pl.run())
    await clock.run(until=lambda: len(sent) >= 8, limit=5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert pl.late_resets == 1
    gaps = [b - a for a, b in zip(sent[3:], sent[4:])]
    assert all(g == pytest.approx(0.020) for g in gaps)  # no burst of catch-up frames


async def _playing(frames: int) -> tuple[Playout, asyncio.Task[None], int, asyncio.Task[PlayoutReport]]:
    """A 1 s segment with a waiter, `frames` of it sent on virtual time."""
    clock = ManualClock()

    async def send(frame: bytes) -> None:
        return None

    pl = Playout(clock, 16000, 20.0, send)
    task = asyncio.create_task(pl.run())
    pl.capture(_pcm(FB * 50))
    sid = pl.flush()
    assert sid is not None
    waiter = asyncio.create_task(pl.wait(sid))
    await clock.run(until=lambda: pl.voiced_frames_sent >= frames, limit=5)
    return pl, task, sid, waiter


async def test_clear_resolves_waiter_as_interrupted() -> None:
    pl, task, _, waiter = await _playing(4)
    pl.clear()
    rep = await waiter
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert rep.interrupted and rep.played_bytes == FB * 4


async def test_report_now_answers_without_waiting_for_a_cleared_or_waited_on_segment() -> None:
    pl, task, sid, waiter = await _playing(3)
    assert pl.report_now(sid) is None  # still playing: nothing to say yet
    pl.clear()
    waiter.cancel()  # the waiter is being cancelled: it asks instead of waiting
    await asyncio.gather(waiter, return_exceptions=True)
    rep = pl.report_now(sid)
    assert rep is not None and rep.interrupted and rep.played_bytes == FB * 3
    assert pl.report_now(sid) is None  # handed out once
    pl.capture(_pcm(FB * 2))
    other = pl.flush()
    assert other is not None
    pl.clear()  # nobody waited on this one: its report is kept until asked for
    late = pl.report_now(other)
    assert late is not None and late.played_bytes == 0 and late.interrupted
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


@pytest.mark.parametrize("failure", [ConnectionResetError("AudioSocket connection already closed"), asyncio.CancelledError()])
async def test_a_send_that_fails_on_a_segments_last_frame_still_resolves_its_waiter(failure: BaseException) -> None:
    # The caller hangs up just as a reply's last frame goes out: that frame took the segment
    # out of the buffer, so a later clear() cannot report it; the reply waiting on it must not
    # hang (it records what the caller heard only once the wait returns).
    clock = ManualClock()
    frames = 0

    async def send(frame: bytes) -> None:
        nonlocal frames
        frames += 1
        if frame != bytes(FB):
            if frames == 3:
                raise failure

    pl = Playout(clock, 16000, 20.0, send)
    pl.capture(_pcm(FB * 3))
    sid = pl.flush()
    assert sid is not None
    waiter = asyncio.create_task(pl.wait(sid))
    task = asyncio.create_task(pl.run())
    await clock.run(until=task.done, limit=5)
    assert pl.clear() == []  # the segment is no longer in the buffer
    rep = await asyncio.wait_for(waiter, 1.0)
    assert rep.segment_id == sid and rep.interrupted and rep.played_bytes == FB * 3
    with pytest.raises(type(failure)):
        await task


async def test_idle_silence_can_be_disabled() -> None:
    clock = ManualClock()
    sent: list[bytes] = []

    async def send(frame: bytes) -> None:
        sent.append(frame)

    pl = Playout(clock, 8000, 30.0, send, idle_silence=False)
    assert pl.buffer.frame_bytes == 480  # 30 ms at 8 kHz: frame size follows the call
    task = asyncio.create_task(pl.run())
    await clock.run(0.3)  # idle ticks: nothing sent
    play = asyncio.create_task(pl.play(_pcm(480)))
    await clock.run(until=play.done, limit=5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert sent == [_pcm(480)]


def test_pause_holds_audio_and_resume_continues_without_loss() -> None:
    b = PlayoutBuffer(16000, FB)
    data = bytes(range(256)) * 10  # 4 frames
    sid = b.capture(data)
    b.flush()
    first = b.next_frame()
    b.paused = True
    held = [b.next_frame() for _ in range(3)]
    assert all(not f.voiced and f.pcm == bytes(FB) for f in held)
    assert b.pending_bytes == 3 * FB  # nothing consumed while paused
    b.paused = False
    rest = [b.next_frame() for _ in range(3)]
    assert first.pcm + b"".join(f.pcm for f in rest) == data
    assert [r.segment_id for r in rest[-1].finished] == [sid]
    assert rest[-1].finished[0].played_bytes == len(data)
