"""The asyncio AudioSocket server against an in-process peer that speaks Asterisk's wire format.

These pin the server's own behaviour (UUID first, first-send silence, media format learned from
the peer, every way a call can end, shutdown). The same paths through the real Asterisk are in
tests/test_asterisk_audio.py.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from audiosocket import protocol as p
from audiosocket.client import AudioSocketClient
from media.pcm import tone
from audiosocket.server import AudioSocketServer, CallEnded, CallSession, EndReason, KeyPress, socket_error_reason

HandlerT = Callable[[CallSession], Awaitable[None]]


class Recorder:
    """A handler that records what it saw, optionally after running `script`."""

    def __init__(self, script: HandlerT | None = None) -> None:
        self.script = script
        self.items: list[object] = []
        self.sessions: list[CallSession] = []
        self.ended = asyncio.Event()

    async def __call__(self, session: CallSession) -> None:
        self.sessions.append(session)
        if self.script is not None:
            await self.script(session)
            return
        while True:
            item = await session.receive()
            self.items.append(item)
            if isinstance(item, CallEnded):
                self.ended.set()
                return


@pytest.fixture
async def make_server() -> AsyncIterator[Callable[..., Awaitable[AudioSocketServer]]]:
    servers: list[AudioSocketServer] = []

    async def _make(handler: HandlerT, **kw: object) -> AudioSocketServer:
        srv = AudioSocketServer(handler, "127.0.0.1", 0, **kw)  # type: ignore[arg-type]
        await srv.start()
        servers.append(srv)
        return srv

    yield _make
    for s in servers:
        await s.close()


async def _until(cond: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


async def test_server_sends_silence_as_soon_as_uuid_arrives(make_server) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    srv = await make_server(rec)
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    ev = await c.recv(timeout=1.0)
    assert isinstance(ev, p.Audio) and ev.sample_rate == 8000 and ev.pcm == bytes(320)
    await _until(lambda: c.call_id in srv.sessions)
    await c.close()
    await asyncio.wait_for(rec.ended.wait(), 2)


@pytest.mark.parametrize(("rate", "ms"), [(16000, 20), (8000, 20), (8000, 30), (16000, 30)])
async def test_media_format_follows_the_peer(make_server, rate: int, ms: int) -> None:  # type: ignore[no-untyped-def]
    played = asyncio.Event()

    async def script(session: CallSession) -> None:
        fmt = await session.media_format()
        assert (fmt.sample_rate, fmt.frame_ms) == (rate, ms)
        pl = await session.start_playout()
        rep = await pl.play(tone(500, ms * 3, rate))
        assert rep.played_ms == pytest.approx(ms * 3)
        played.set()
        await session.ended.wait()

    srv = await make_server(Recorder(script))
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    frame = bytes(rate * ms // 1000 * 2)
    await c.send_audio(frame, rate)
    await asyncio.wait_for(played.wait(), 3)
    voiced: list[bytes] = []
    while len(voiced) < 3:
        ev = await c.recv()
        assert isinstance(ev, p.Audio)
        if ev.sample_rate == rate and any(ev.pcm):
            assert len(ev.pcm) == len(frame)
            voiced.append(ev.pcm)
    assert b"".join(voiced) == tone(500, ms * 3, rate)
    await c.close()


async def test_eof_is_caller_hangup_and_frees_the_session(make_server) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    srv = await make_server(rec)
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    await c.send_audio(bytes(640), 16000)
    await c.send_dtmf("7")
    await _until(lambda: len(rec.items) >= 2)
    await c.close()
    await asyncio.wait_for(rec.ended.wait(), 2)
    assert isinstance(rec.items[0], p.Audio) and isinstance(rec.items[1], KeyPress) and rec.items[1].digit == "7"
    assert isinstance(rec.items[-1], CallEnded) and rec.items[-1].reason == EndReason.CALLER_HANGUP
    await _until(lambda: not srv.sessions)
    assert srv.finished[-1] == (c.call_id, EndReason.CALLER_HANGUP)


@pytest.mark.parametrize("exc, reason", [
    (ConnectionResetError(104, "Connection reset by peer"), EndReason.CALLER_HANGUP),  # closed with our frames unread
    # A peer's plain close, then our playout writes before the loop reads its end: asyncio gives
    # the reader the write's EPIPE (the likely path of a call a twenty-call run once ended as "lost").
    (BrokenPipeError(32, "Broken pipe"), EndReason.CALLER_HANGUP),
    (TimeoutError(110, "Connection timed out"), EndReason.CONNECTION_LOST),  # the peer vanished
    (OSError(113, "No route to host"), EndReason.CONNECTION_LOST),
])
def test_a_socket_error_names_who_ended_the_call(exc: OSError, reason: EndReason) -> None:
    assert socket_error_reason(exc) == reason


async def test_hangup_frame_from_asterisk_ends_call(make_server) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    srv = await make_server(rec)
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    await c.send_hangup()
    await asyncio.wait_for(rec.ended.wait(), 2)
    assert isinstance(rec.items[-1], CallEnded) and rec.items[-1].reason == EndReason.CALLER_HANGUP
    await _until(lambda: not srv.sessions)
    await c.close()


async def _drain_until_hangup(c: AudioSocketClient) -> list[p.Event]:
    seen: list[p.Event] = []
    while True:
        ev = await c.recv(timeout=3)
        seen.append(ev)
        if isinstance(ev, (p.Hangup, p.Closed)):
            return seen


async def test_handler_return_hangs_up_with_0x00_then_closes(make_server) -> None:  # type: ignore[no-untyped-def]
    async def script(session: CallSession) -> None:
        pl = await session.start_playout(timeout=0.05)
        await pl.play(tone(440, 60, 8000))

    srv = await make_server(Recorder(script))
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    seen = await _drain_until_hangup(c)
    assert isinstance(seen[-1], p.Hangup)
    assert isinstance(await c.recv(), p.Closed)
    await _until(lambda: not srv.sessions)
    assert srv.finished[-1][1] == EndReason.AGENT_HANGUP
    await c.close()


async def test_handler_crash_ends_only_that_call(make_server) -> None:  # type: ignore[no-untyped-def]
    calls = 0

    async def script(session: CallSession) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("boom")
        await session.ended.wait()

    srv = await make_server(Recorder(script))
    c1 = await AudioSocketClient.connect("127.0.0.1", srv.port)
    assert isinstance((await _drain_until_hangup(c1))[-1], p.Hangup)
    await _until(lambda: not srv.sessions)
    assert srv.finished[-1][1] == EndReason.HANDLER_ERROR
    await c1.close()
    c2 = await AudioSocketClient.connect("127.0.0.1", srv.port)  # the server still serves
    await _until(lambda: c2.call_id in srv.sessions)
    await c2.close()


async def test_garbage_before_uuid_and_silent_peer_are_dropped(make_server) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    srv = await make_server(rec, uuid_timeout=0.2)
    bad = await AudioSocketClient.connect("127.0.0.1", srv.port, send_uuid=False)
    await bad.send_audio(bytes(320), 8000)  # audio before any UUID: protocol error
    assert isinstance(await bad.recv(), p.Closed)
    mute = await AudioSocketClient.connect("127.0.0.1", srv.port, send_uuid=False)
    assert isinstance(await mute.recv(timeout=2), p.Closed)  # timed out waiting for the UUID
    assert srv.calls_total == 0 and not rec.sessions
    await bad.close()
    await mute.close()


async def test_protocol_error_mid_call_ends_call_with_reason(make_server) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    srv = await make_server(rec)
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    await c.send_raw(b"\x10\x00\x03abc")  # odd-length slin
    await asyncio.wait_for(rec.ended.wait(), 2)
    end = rec.items[-1]
    assert isinstance(end, CallEnded) and end.reason == EndReason.PROTOCOL_ERROR and "even" in end.detail
    await c.close()


async def test_unknown_kind_is_reported_not_fatal(make_server) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    srv = await make_server(rec)
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    await c.send_raw(p.encode_frame(0x42, b"xyz"))
    await c.send_dtmf("#")
    await _until(lambda: len(rec.items) >= 2)
    assert rec.items[0] == p.UnknownFrame(0x42, b"xyz") and isinstance(rec.items[1], KeyPress) and rec.items[1].digit == "#"
    assert c.call_id in srv.sessions
    await c.close()


async def test_duplicate_uuid_is_refused(make_server) -> None:  # type: ignore[no-untyped-def]
    rec = Recorder()
    srv = await make_server(rec)
    call_id = uuid.uuid4()
    c1 = await AudioSocketClient.connect("127.0.0.1", srv.port, call_id)
    await _until(lambda: call_id in srv.sessions)
    c2 = await AudioSocketClient.connect("127.0.0.1", srv.port, call_id)
    assert isinstance(await c2.recv(), p.Hangup)
    assert call_id in srv.sessions and srv.calls_total == 1
    await c1.close()
    await c2.close()


async def test_tcp_nodelay_is_set(make_server) -> None:  # type: ignore[no-untyped-def]
    got: list[int] = []

    async def script(session: CallSession) -> None:
        sock = session._writer.get_extra_info("socket")
        got.append(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    srv = await make_server(Recorder(script))
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    await _drain_until_hangup(c)
    await c.close()
    assert got == [1]


async def test_graceful_shutdown_hangs_up_every_call() -> None:
    rec = Recorder()
    srv = AudioSocketServer(rec, "127.0.0.1", 0)
    await srv.start()
    clients = [await AudioSocketClient.connect("127.0.0.1", srv.port) for _ in range(3)]
    await _until(lambda: len(srv.sessions) == 3)
    await srv.close(grace=2.0)
    for c in clients:
        assert isinstance((await _drain_until_hangup(c))[-1], p.Hangup)
        await c.close()
    assert not srv.sessions
    assert sorted(r for _, r in srv.finished) == [EndReason.SHUTDOWN] * 3
    with pytest.raises(OSError):
        await AudioSocketClient.connect("127.0.0.1", srv.port)


async def test_slow_handler_bounds_inbound_queue(make_server) -> None:  # type: ignore[no-untyped-def]
    gate = asyncio.Event()

    async def script(session: CallSession) -> None:
        await gate.wait()

    srv = await make_server(Recorder(script), inbound_limit=10)
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    for _ in range(30):
        await c.send_audio(bytes(320), 8000)
    await _until(lambda: c.call_id in srv.sessions and srv.sessions[c.call_id].frames_in == 30)
    s = srv.sessions[c.call_id]
    assert s.dropped_in == 20 and s.inbound_queued == 10
    gate.set()
    await c.close()


async def test_key_presses_survive_an_audio_backlog_and_carry_their_read_time(make_server) -> None:  # type: ignore[no-untyped-def]
    """A handler that is behind loses its oldest audio, never a key press; each press says when
    it was read (a flood guard must judge the wire rate, not the handler's)."""
    gate = asyncio.Event()
    seen: list[object] = []

    async def script(session: CallSession) -> None:
        await gate.wait()
        while not isinstance(item := await session.receive(), CallEnded):
            seen.append(item)

    srv = await make_server(Recorder(script), inbound_limit=10)
    c = await AudioSocketClient.connect("127.0.0.1", srv.port)
    for i in range(30):
        await c.send_audio(bytes(320), 8000)
        if i % 10 == 0:
            await c.send_dtmf(str(i // 10))
    await _until(lambda: c.call_id in srv.sessions and srv.sessions[c.call_id].frames_in == 30)
    s = srv.sessions[c.call_id]
    assert s.dropped_in == 20 and s.inbound_queued == 13
    gate.set()
    await c.close()
    await _until(lambda: s.is_ended and s.inbound_queued == 0)
    keys = [k for k in seen if isinstance(k, KeyPress)]
    assert [k.digit for k in keys] == ["0", "1", "2"]
    assert all(s.started_at <= k.at <= srv.clock.now() for k in keys)
    assert sum(isinstance(a, p.Audio) for a in seen) == 10
