"""asyncio AudioSocket server: a thin shell around the sans-IO codec.

One TCP connection is one call. The server reads the UUID frame, answers at once with a short
silence (Asterisk can wedge if the server never sends first), learns the media format from the
first audio frame (rate from the frame kind, frame duration from its length: never assumed),
then runs three tasks per call: the reader, the paced playout, and the handler the composition
root supplied. The server knows nothing about dialog: it only calls `handler(session)`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import enum
import logging
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from audiosocket import protocol as p
from media.clock import Clock, MonotonicClock
from media.pcm import duration_ms, frame_bytes
from audiosocket.playout import Playout

log = logging.getLogger(__name__)
# The call this task serves: set once its UUID is read; every task the call's handler creates
# inherits it (phoneagent/logs.py puts it on each log line).
CALL_ID: contextvars.ContextVar[str] = contextvars.ContextVar("call_id", default="")
PEER_TIMEOUT_DEFAULT_S = 5.0  # see AudioSocketServer: a peer gone without a FIN ends the call this soon


class EndReason(str, enum.Enum):
    CALLER_HANGUP = "caller_hangup"  # TCP EOF or a 0x00 frame from Asterisk
    AGENT_HANGUP = "agent_hangup"  # the handler returned or called hangup()
    ERROR_FRAME = "error_frame"  # Asterisk reported an error (0xFF)
    PROTOCOL_ERROR = "protocol_error"
    HANDLER_ERROR = "handler_error"
    SHUTDOWN = "shutdown"
    CONNECTION_LOST = "connection_lost"


@dataclass(frozen=True, slots=True)
class MediaFormat:
    sample_rate: int
    frame_ms: float

    @property
    def frame_bytes(self) -> int:
        return frame_bytes(self.sample_rate, self.frame_ms)


def socket_error_reason(exc: OSError) -> EndReason:
    """Why a call whose socket failed ended. Asterisk closing with our frames unread arrives as a
    reset; and when our writes meet the closed socket before the reader has seen its end (a
    loaded loop), asyncio hands the reader the write's broken pipe instead. Either way the far
    end hung up. Anything else (the peer timed out, no route) is a lost connection."""
    if isinstance(exc, (ConnectionResetError, BrokenPipeError)):
        return EndReason.CALLER_HANGUP
    return EndReason.CONNECTION_LOST


@dataclass(frozen=True, slots=True)
class CallEnded:
    """The last item of a session's inbound stream."""

    reason: EndReason
    detail: str = ""


@dataclass(frozen=True, slots=True)
class KeyPress(p.Dtmf):
    """A DTMF frame as the session read it. `at` is the session clock at that moment, so a
    handler working through a backlog still sees how fast the keys really came (a flood guard
    judging by when it got round to a key would miss a flood on a busy box)."""

    at: float


InboundItem = p.Audio | KeyPress | p.UnknownFrame | CallEnded


class CallSession:
    """One call's state as the handler sees it: inbound items, playout, hangup."""

    _KEY_LIMIT = 256  # queued key presses; a flood past this while the handler is behind is dropped

    def __init__(
        self,
        call_id: uuid.UUID,
        peer: str,
        writer: asyncio.StreamWriter,
        clock: Clock,
        *,
        inbound_limit: int,
        default_format: MediaFormat,
        write_timeout: float = 5.0,
    ) -> None:
        self.call_id = call_id
        self._write_timeout = write_timeout
        self.peer = peer
        self.clock = clock
        self._writer = writer
        self._default_format = default_format
        # In arrival order. Only audio is bounded: past `inbound_limit` frames the oldest *audio*
        # frame goes (late audio is worth nothing; a key press is the caller's input, and a key
        # flood is the dialog's to judge, at most `_KEY_LIMIT` queued).
        self._inbound: collections.deque[InboundItem] = collections.deque()
        self._inbound_ready = asyncio.Event()
        self._inbound_limit = inbound_limit
        self._audio_queued = 0
        self._keys_queued = 0
        self._media: asyncio.Future[MediaFormat] = asyncio.get_running_loop().create_future()
        self._write_lock = asyncio.Lock()
        self.playout: Playout | None = None
        self.ended = asyncio.Event()
        self.end_reason: EndReason | None = None
        self.end_detail = ""
        self.frames_in = 0
        self.bytes_in = 0
        self.dropped_in = 0  # inbound frames dropped because the handler fell behind
        self.started_at = clock.now()

    # --- handler API ---
    async def media_format(self, timeout: float | None = 5.0) -> MediaFormat:
        """The call's audio format, known from Asterisk's first audio frame.

        An unbridged channel sends no audio; after `timeout` the configured default is used.
        """
        try:
            async with asyncio.timeout(timeout):
                return await asyncio.shield(self._media)
        except TimeoutError:
            self._set_media(self._default_format)
            return self._default_format

    async def start_playout(self, timeout: float | None = 5.0) -> Playout:
        """The paced playout for this call (created once, at the call's own rate/frame size)."""
        fmt = await self.media_format(timeout)
        if self.playout is None:
            self.playout = Playout(self.clock, fmt.sample_rate, fmt.frame_ms, self._send_audio)
        return self.playout

    async def receive(self) -> InboundItem:
        """Next inbound audio frame, digit or the final CallEnded (repeated once ended)."""
        while not self._inbound:
            if self.ended.is_set():
                return CallEnded(self.end_reason or EndReason.CALLER_HANGUP, self.end_detail)
            self._inbound_ready.clear()
            await self._inbound_ready.wait()
        item = self._inbound.popleft()
        if isinstance(item, p.Audio):
            self._audio_queued -= 1
        elif isinstance(item, KeyPress):
            self._keys_queued -= 1
        return item

    @property
    def inbound_queued(self) -> int:
        """Items waiting for the handler."""
        return len(self._inbound)

    async def hangup(self, reason: EndReason = EndReason.AGENT_HANGUP) -> None:
        """End the call from our side: a 0x00 frame tells Asterisk to hang up the channel."""
        self._end(reason)
        with contextlib.suppress(ConnectionError, TimeoutError, OSError):
            await self._write(p.encode_hangup())

    async def send_dtmf(self, digit: str) -> None:
        await self._write(p.encode_dtmf(digit))

    @property
    def is_ended(self) -> bool:
        return self.ended.is_set()

    # --- server side ---
    def _deliver(self, item: p.Audio | p.Dtmf | p.UnknownFrame) -> None:
        if isinstance(item, p.Audio):
            self.frames_in += 1
            self.bytes_in += len(item.pcm)
            if not self._media.done() and item.pcm:
                self._set_media(MediaFormat(item.sample_rate, duration_ms(len(item.pcm), item.sample_rate)))
            if self._audio_queued >= self._inbound_limit:  # bounded memory, never block the reader
                oldest = next(i for i, queued in enumerate(self._inbound) if isinstance(queued, p.Audio))
                del self._inbound[oldest]
                self._audio_queued -= 1
                self.dropped_in += 1
            self._audio_queued += 1
        elif isinstance(item, p.Dtmf):
            if self._keys_queued >= self._KEY_LIMIT:
                self.dropped_in += 1
                return
            item = KeyPress(item.digit, self.clock.now())
            self._keys_queued += 1
        self._inbound.append(item)
        self._inbound_ready.set()

    def _set_media(self, fmt: MediaFormat) -> None:
        if not self._media.done():
            self._media.set_result(fmt)

    def _end(self, reason: EndReason, detail: str = "") -> None:
        if not self.ended.is_set():
            self.end_reason = reason
            self.end_detail = detail
            self.ended.set()
            self._inbound.append(CallEnded(reason, detail))
            self._inbound_ready.set()

    async def _send_audio(self, pcm: bytes) -> None:
        fmt = self._media.result() if self._media.done() else self._default_format
        await self._write(p.encode_audio(pcm, fmt.sample_rate))

    async def _write(self, data: bytes) -> None:
        if self._writer.is_closing():
            raise ConnectionResetError("AudioSocket connection already closed")
        async with self._write_lock:
            self._writer.write(data)
            # A peer that stops reading must not stall playout forever. asyncio.timeout, not
            # wait_for: on Python 3.11 wait_for can swallow a cancel (a barge-in stopping
            # playout) that lands as the drain completes (cpython#86296).
            async with asyncio.timeout(self._write_timeout):
                await self._writer.drain()


Handler = Callable[[CallSession], Awaitable[None]]


class AudioSocketServer:
    """Accepts Asterisk's AudioSocket connections and runs `handler(session)` for each call."""

    def __init__(
        self,
        handler: Handler,
        host: str = "127.0.0.1",
        port: int = 9092,
        *,
        clock: Clock | None = None,
        uuid_timeout: float = 5.0,
        initial_silence_ms: float = 20.0,
        default_format: MediaFormat = MediaFormat(8000, 20.0),
        inbound_limit: int = 500,
        write_timeout: float = 5.0,
        peer_timeout: float = PEER_TIMEOUT_DEFAULT_S,
    ) -> None:
        self.handler = handler
        self.host = host
        self.port = port
        self.clock = clock or MonotonicClock()
        self.uuid_timeout = uuid_timeout
        self.initial_silence_ms = initial_silence_ms
        self.default_format = default_format
        self.inbound_limit = inbound_limit
        self.write_timeout = write_timeout
        # A peer whose host vanished (power, network) sends no FIN or RST, and a read would wait
        # forever. We send a frame every 20 ms, so TCP_USER_TIMEOUT (RFC 5482) ends the
        # connection once our data has gone unacknowledged this long: the call ends as
        # connection_lost within a few seconds instead of minutes of retransmits. 0: the
        # kernel's default (tcp_retries2, ~15 min).
        if not peer_timeout >= 0:
            raise ValueError(f"peer_timeout must be >= 0 seconds, got {peer_timeout}")
        self.peer_timeout = peer_timeout
        self.sessions: dict[uuid.UUID, CallSession] = {}
        self.calls_total = 0
        self.finished: list[tuple[uuid.UUID, EndReason]] = []  # bounded history for tests/metrics
        self._server: asyncio.Server | None = None
        self._conn_tasks: set[asyncio.Task[None]] = set()
        self._closing = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self.host, self.port)
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        log.info("AudioSocket server listening on %s:%d", self.host, self.port)

    @property
    def listening(self) -> bool:
        """Started and not closing: new calls are accepted."""
        return self._server is not None and not self._closing

    async def close(self, grace: float = 2.0) -> None:
        """Graceful shutdown, in this order: stop accepting (no new calls can race in), then ask
        every live call to end (0x00 so Asterisk hangs up cleanly rather than seeing a reset),
        then give the per-call tasks `grace` seconds before cancelling what is left."""
        self._closing = True
        if self._server is not None:
            self._server.close()
        await asyncio.gather(*(s.hangup(EndReason.SHUTDOWN) for s in list(self.sessions.values())), return_exceptions=True)
        if self._conn_tasks:
            _, pending = await asyncio.wait(self._conn_tasks, timeout=grace)
            for t in pending:
                t.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> AudioSocketServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._conn_tasks.add(task)
        try:
            await self._serve(reader, writer)
        finally:
            self._conn_tasks.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                async with asyncio.timeout(1.0):
                    await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.peer_timeout:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, round(self.peer_timeout * 1000))
        peer = str(writer.get_extra_info("peername"))
        if self._closing:
            return
        decoder = p.AudioSocketDecoder()
        try:
            async with asyncio.timeout(self.uuid_timeout):
                call_id = await self._read_uuid(reader, decoder)
        except (TimeoutError, p.ProtocolError, ConnectionError) as exc:
            log.warning("AudioSocket connection from %s dropped before a valid UUID: %s", peer, exc)
            return
        CALL_ID.set(str(call_id))
        if call_id in self.sessions:
            log.error("duplicate AudioSocket UUID %s from %s: refusing the second connection", call_id, peer)
            writer.write(p.encode_hangup())
            return
        # Send first, immediately: avoids the Asterisk receive-loop wedge (see ASTERISK.md).
        writer.write(p.encode_audio(bytes(frame_bytes(self.default_format.sample_rate, self.initial_silence_ms)), self.default_format.sample_rate))
        session = CallSession(call_id, peer, writer, self.clock, inbound_limit=self.inbound_limit, default_format=self.default_format, write_timeout=self.write_timeout)
        self.sessions[call_id] = session
        self.calls_total += 1
        log.info("call %s connected from %s", call_id, peer)
        try:
            await self._run_call(session, reader, decoder)
        finally:
            self.sessions.pop(call_id, None)
            self.finished.append((call_id, session.end_reason or EndReason.CONNECTION_LOST))
            del self.finished[:-1000]
            log.info("call %s ended: %s %s", call_id, session.end_reason, session.end_detail)

    async def _read_uuid(self, reader: asyncio.StreamReader, decoder: p.AudioSocketDecoder) -> uuid.UUID:
        while True:
            ev = decoder.next_event()
            if isinstance(ev, p.UuidFrame):
                return ev.uuid
            if isinstance(ev, p.Closed):
                raise ConnectionError("closed before UUID")
            if ev is p.NEED_DATA:
                decoder.receive_data(await reader.read(65536))

    async def _run_call(self, session: CallSession, reader: asyncio.StreamReader, decoder: p.AudioSocketDecoder) -> None:
        async def handler() -> None:
            try:
                await self.handler(session)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a handler bug ends this call, never the server
                log.exception("handler failed for call %s", session.call_id)
                session._end(EndReason.HANDLER_ERROR, repr(exc))
                await session.hangup()
                return
            if not session.is_ended:
                await session.hangup()

        async def playout() -> None:
            await self._keepalive(session)
            pl = await session.start_playout(timeout=None)
            await pl.run()

        tasks = [
            asyncio.create_task(self._reader(session, reader, decoder), name=f"as-read-{session.call_id}"),
            asyncio.create_task(handler(), name=f"as-handler-{session.call_id}"),
        ]
        play_task = asyncio.create_task(playout(), name=f"as-playout-{session.call_id}")
        ended = asyncio.create_task(session.ended.wait())
        try:
            # The call lives until it ends for any reason; the handler may keep draining
            # session.receive() for a moment after that (it sees CallEnded), bounded below.
            await asyncio.wait([ended, play_task], return_when=asyncio.FIRST_COMPLETED)
            if play_task.done() and not session.is_ended:
                # A write failed: usually Asterisk hung up and our frame raced its close. Let
                # the reader see the EOF/reset and name the reason before calling it lost.
                await asyncio.wait([ended], timeout=0.5)
                if not session.is_ended:
                    exc = play_task.exception()
                    session._end(EndReason.CONNECTION_LOST, repr(exc))
            await asyncio.wait([tasks[1]], timeout=self.write_timeout)
        finally:
            for t in (*tasks, play_task, ended):
                t.cancel()
            await asyncio.gather(*tasks, play_task, ended, return_exceptions=True)

    async def _keepalive(self, session: CallSession) -> None:
        """Until Asterisk's first audio tells us the call's format, send 20 ms of 8 kHz silence
        every 20 ms (kind 0x10: every Asterisk version reads it). chan_audiosocket's read blocks
        on the socket: an ARI externalMedia channel added to a bridge before any audio flows
        would otherwise stall the bridge, and the ARI addChannel call with it."""
        frame = p.encode_audio(bytes(frame_bytes(8000, 20)), 8000)
        media = asyncio.shield(session._media)
        while not session._media.done() and not session.is_ended:
            await session._write(frame)
            await asyncio.wait([media], timeout=0.02)

    async def _reader(self, session: CallSession, reader: asyncio.StreamReader, decoder: p.AudioSocketDecoder) -> None:
        try:
            while True:
                ev = decoder.next_event()
                if ev is p.NEED_DATA:
                    decoder.receive_data(await reader.read(65536))
                    continue
                if isinstance(ev, (p.Closed, p.Hangup)):
                    session._end(EndReason.CALLER_HANGUP)
                    return
                if isinstance(ev, p.ErrorFrame):
                    session._end(EndReason.ERROR_FRAME, f"code={ev.code}")
                    return
                if isinstance(ev, (p.Audio, p.Dtmf, p.UnknownFrame)):
                    if isinstance(ev, p.UnknownFrame):
                        log.warning("call %s: unknown AudioSocket frame kind 0x%02x (%d bytes) ignored", session.call_id, ev.kind, len(ev.payload))
                    session._deliver(ev)
                # a second UUID frame mid-call is ignored: the call is already identified
        except p.ProtocolError as exc:
            log.error("call %s: protocol error: %s", session.call_id, exc)
            session._end(EndReason.PROTOCOL_ERROR, str(exc))
        except OSError as exc:
            session._end(socket_error_reason(exc), repr(exc))
