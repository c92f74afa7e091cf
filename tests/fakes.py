"""Fakes, each standing in for a behaviour the real part cannot produce on demand.

The bundled LLM is a 270M BASE model: it cannot follow a script, fail, or hang when a test
needs it to. These LLMs inject exactly that; every other engine in those tests is real. The STT
wrapper at the end injects "heard no words" on cue, around the real whisper.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncGenerator, Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ari_app.call import Speak, TransferResult
from media.clock import ManualClock, sleep
from audiosocket.playout import Playout
from audiosocket.protocol import Audio, Dtmf, Kind
from audiosocket.server import CallEnded, EndReason, InboundItem, MediaFormat
from models.base import (
    LLM, STT, VAD, AudioChunk, CancelToken, EngineError, EngineInfo, GenerationStats, Message, Token, ToolCall, ToolSpec,
    Transcript, VADStream, estimate_tokens,
)
from models.scheduler import Priority
from phoneagent.tools.webhook import ToolResult


class ScriptedLLM(LLM):
    """Replies with the next scripted text, token by token (a word each), `token_s` apart.

    `by_turn`: the reply is chosen by the caller's turn (the number of user messages), not by
    call. Needed wherever the real endpointer runs: a speculative reply dropped after its LLM
    call (the caller only paused) would otherwise take the script's next reply, and which
    pauses get that far depends on how fast the CPU transcribes them."""

    def __init__(self, replies: Sequence[str], token_s: float = 0.02, *, by_turn: bool = False) -> None:
        self.replies = list(replies)
        self.token_s = token_s
        self.by_turn = by_turn
        self.calls: list[list[Message]] = []
        self.produced = 0  # tokens generated so far, all replies (read from other threads)
        self.info = EngineInfo("llm", "scripted-fake", "-", "cpu", streaming=True)

    def stream(self, messages: Sequence[Message], *, max_tokens: int = 128, temperature: float = 0.0, stop: Sequence[str] = (),
               cancel: CancelToken | None = None, session_key: str | None = None) -> Generator[Token, None, GenerationStats]:
        self.calls.append(list(messages))
        turn = sum(m.role == "user" for m in messages) if self.by_turn else len(self.calls)
        text = self.replies[min(max(turn, 1) - 1, len(self.replies) - 1)]
        words = text.split(" ")
        t0 = time.perf_counter()
        n = 0
        for i, w in enumerate(words[:max_tokens]):
            if cancel is not None and cancel.cancelled:
                return GenerationStats(0, 0, n, 0.0, time.perf_counter() - t0, "cancelled")
            time.sleep(self.token_s)
            n += 1
            self.produced += 1
            yield Token(w if i == 0 else " " + w, i)
        return GenerationStats(0, 0, n, self.token_s, time.perf_counter() - t0, "stop")

    def tool_call(self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, cancel: CancelToken | None = None,
                  session_key: str | None = None) -> ToolCall | None:
        return None


class FailingLLM(ScriptedLLM):
    """Raises the way a crashed model does, before its first token."""

    def stream(self, messages: Sequence[Message], **kw: object) -> Generator[Token, None, GenerationStats]:
        raise EngineError("llama.cpp: simulated crash")
        yield  # pragma: no cover


class HangingLLM(ScriptedLLM):
    """Never produces a token (a wedged GPU): only cancellation ends it."""

    def stream(self, messages: Sequence[Message], *, cancel: CancelToken | None = None, **kw: object) -> Generator[Token, None, GenerationStats]:
        while cancel is None or not cancel.cancelled:
            time.sleep(0.02)
        return GenerationStats(0, 0, 0, 0.0, 0.0, "cancelled")
        yield  # pragma: no cover


class WordlessAfterFirstSTT(STT):
    """The real STT for the first utterance, then no words at all: what whisper returns for a
    cough or a door slam that VAD took for speech (real audio cannot make that happen on cue)."""

    def __init__(self, real: STT) -> None:
        self.real = real
        self.info = EngineInfo("stt", "wordless-after-first-fake", "-", "cpu", streaming=False)
        self.calls = 0

    def transcribe(self, pcm: bytes, sample_rate: int, *, language: str | None = None, prompt: str | None = None,
                   hypotheses: int = 1, repeats: bool = False) -> Transcript:
        self.calls += 1
        if self.calls == 1:
            return self.real.transcribe(pcm, sample_rate, language=language, prompt=prompt, hypotheses=hypotheses, repeats=repeats)
        return Transcript(text="", normalized="", confidence=0.0, no_speech_prob=0.95, language="en",
                          audio_s=len(pcm) / 2 / sample_rate, decode_s=0.0)


# --- virtual-time fakes: the whole dialog on ManualClock (tests/dialog/test_dialog_virtual.py) ---
# Real engines run in threads, which virtual time cannot wait for; these stand in for them in
# the dialog-logic tests, asyncio-only, with their delays on the call's clock. Every behaviour
# they script also has a test through the real engines (test_session.py, the Asterisk tests).
VOICED = 8000  # sample value of the caller's "speech": the fake VAD hears any loud window as voice


class LoudnessVAD(VAD):
    """Stands in for silero: a window is speech when its samples are loud (the test caller's
    "speech" is a constant loud signal, silence is zeros). 32 ms windows, as silero's."""

    info = EngineInfo("vad", "loudness-fake", "-", "cpu", streaming=True)

    def stream(self, sample_rate: int) -> VADStream:
        return _LoudnessStream(sample_rate)


class _LoudnessStream(VADStream):
    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._win = rate * 32 // 1000
        self._buf = bytearray()

    def process(self, pcm: bytes) -> list[float]:
        self._buf += pcm
        out = []
        while len(self._buf) >= self._win * 2:
            window = bytes(self._buf[: self._win * 2])
            del self._buf[: self._win * 2]
            loud = max(abs(int.from_bytes(window[i:i + 2], "little", signed=True)) for i in range(0, len(window), 64))
            out.append(0.95 if loud >= VOICED // 2 else 0.02)
        return out

    def reset(self) -> None:
        self._buf.clear()

    @property
    def window_ms(self) -> float:
        return 32.0

    @property
    def buffered_samples(self) -> int:
        return len(self._buf) // 2


@dataclass
class Heard:
    """What the scripted STT returns for one caller turn: a text, or an error to raise, after
    `delay_s` of the call's clock."""

    text: str = ""
    delay_s: float = 0.1
    error: Exception | None = None
    confidence: float = 0.9
    alternatives: tuple[str, ...] = ()  # next-best texts, returned when asked for
    withheld: str = ""  # decoded but blanked as "not speech" (Transcript.withheld); text must be ""


@dataclass
class Said:
    """What the scripted LLM answers: `words` one token each, the first after `first_s`, the
    rest `token_s` apart (call clock); `error` raised instead of the first token."""

    text: str
    first_s: float = 0.1
    token_s: float = 0.02
    error: Exception | None = None


@dataclass
class VirtualEngines:
    """Stands in for models.engines.Engines on virtual time: scripted STT and LLM (the bundled
    models cannot be scripted, fail or stall on cue), a TTS that speaks 0.25 s of tone a word,
    and the loudness VAD. Records what the dialog asked of it."""

    clock: ManualClock
    heard: list[Heard] = field(default_factory=list)
    said: list[Said] = field(default_factory=list)
    word_s: float = 0.25
    tts_delay_s: float = 0.05
    vad: VAD = field(default_factory=LoudnessVAD)
    prompts: list[list[Message]] = field(default_factory=list)
    spoken: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    llm_on_cpu: bool = False
    context_tokens: int = 2048
    acts: list[ToolCall | None] = field(default_factory=list)  # the LLM's scripted steps (None: reply)
    act_s: float = 0.1
    prefilled: list[list[Message]] = field(default_factory=list)
    prefilled_open: list[str] = field(default_factory=list)  # the caller's words so far, evaluated ahead (open_turn)
    spare_now: bool = True
    ahead: list[float] = field(default_factory=list)  # seconds of audio each transcription ahead of a pause heard
    ahead_text: str = ""  # what such a transcription returns
    ahead_s: float = 0.1
    known: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # what act was told the caller said
    transcriptions: int = 0
    stt_prompts: list[str | None] = field(default_factory=list)  # what each transcription was told to expect
    turn_p: list[float] = field(default_factory=list)  # the end-of-turn model's scripted verdicts
    turn_s: float = 0.1  # its inference time on the call's clock
    tts_stall_at: int | None = None  # the TTS wedges from this clause on (counted in `spoken`), deaf to its cancel token

    async def prefill(self, messages: Sequence[Message], *, session_key: str | None = None, every_instance: bool = False,
                      open_turn: bool = False) -> int:
        self.prefilled.append(list(messages))
        if open_turn:
            self.prefilled_open.append(messages[-1].content)
        return 0

    @property
    def spare(self) -> bool:
        return self.spare_now

    async def act(self, messages: Sequence[Message], tools: Sequence[ToolSpec], *, cancel: CancelToken, session_key: str | None = None,
                  on_choice: Callable[[str], None] | None = None, known: Mapping[str, Mapping[str, Any]] | None = None,
                  ) -> ToolCall | None:
        self.prompts.append(list(messages))
        self.known.append({k: dict(v) for k, v in (known or {}).items()})
        call = self.acts.pop(0) if self.acts else None
        await sleep(self.clock, self.act_s / 2)
        if call is not None and on_choice is not None:
            on_choice(call.name)
        await sleep(self.clock, self.act_s / 2)
        if call is not None and call.name not in {t.name for t in tools}:
            raise AssertionError(f"scripted step {call.name!r} was not offered: {[t.name for t in tools]}")
        return call

    def count_tokens(self, messages: Sequence[Message]) -> int:
        return estimate_tokens(messages)

    @property
    def has_turn_model(self) -> bool:
        return bool(self.turn_p)

    async def end_of_turn(self, pcm: bytes, sample_rate: int) -> float:
        await sleep(self.clock, self.turn_s)
        return self.turn_p.pop(0)

    async def transcribe(self, pcm: bytes, sample_rate: int, *, prompt: str | None = None, hypotheses: int = 1,
                         repeats: bool = False, priority: Priority = Priority.TURN) -> Transcript:
        if priority == Priority.BACKGROUND:  # the words of a turn still being spoken: not a scripted turn
            self.ahead.append(len(pcm) / 2 / sample_rate)
            await sleep(self.clock, self.ahead_s)
            return Transcript(text=self.ahead_text, normalized=self.ahead_text, confidence=0.9 if self.ahead_text else 0.0,
                              no_speech_prob=0.0, language="en", audio_s=len(pcm) / 2 / sample_rate, decode_s=self.ahead_s)
        self.transcriptions += 1
        self.stt_prompts.append(prompt)
        h = self.heard.pop(0) if self.heard else Heard("")
        await sleep(self.clock, h.delay_s)
        if h.error is not None:
            raise h.error
        return Transcript(text=h.text, normalized=h.text, confidence=h.confidence if h.text else 0.0,
                          no_speech_prob=0.0 if h.text else 0.9, language="en", audio_s=len(pcm) / 2 / sample_rate, decode_s=h.delay_s,
                          alternatives=h.alternatives[:hypotheses - 1], withheld=h.withheld)

    async def reply_tokens(self, messages: Sequence[Message], *, cancel: CancelToken, session_key: str | None = None,
                           max_tokens: int = 96, gate: threading.Event | None = None) -> AsyncGenerator[Token, None]:
        self.prompts.append(list(messages))
        s = self.said.pop(0) if self.said else Said("Okay.")
        await sleep(self.clock, s.first_s)
        if s.error is not None:
            raise s.error
        words = s.text.split(" ")[:max_tokens]
        produced = 0
        try:
            for i, word in enumerate(words):
                if i:
                    await sleep(self.clock, s.token_s)
                if cancel.cancelled:
                    return
                yield Token(word if i == 0 else " " + word, i)
                produced += 1
        finally:
            if produced < len(words):  # stopped early: cancelled, or the consumer closed the stream
                self.cancelled.append(s.text)

    async def speak(self, text: str, sample_rate: int, *, cancel: CancelToken,
                    priority: Priority = Priority.TURN) -> AsyncGenerator[AudioChunk, None]:
        if self.tts_stall_at is not None and len(self.spoken) >= self.tts_stall_at:
            await asyncio.Event().wait()  # a synthesis thread that does not come back: only a task cancel ends this
        await sleep(self.clock, self.tts_delay_s)
        if cancel.cancelled:  # as models.engines.Engines.speak: its scheduler ends the stream, no error
            return
        self.spoken.append(text)
        n = int(len(text.split()) * self.word_s * sample_rate)
        yield AudioChunk((1000).to_bytes(2, "little", signed=True) * n, sample_rate, text)


class VirtualCall:
    """Stands in for an AudioSocket call from Asterisk (audiosocket.server.CallSession), in
    memory: the caller sends a 20 ms frame every 20 ms of the call's clock (silence unless
    speaking), and the agent's frames are kept with the time they went out."""

    RATE = 16000
    FRAME = 640

    def __init__(self, clock: ManualClock) -> None:
        self.call_id = uuid.uuid4()
        self.clock = clock
        self._inbound: asyncio.Queue[InboundItem] = asyncio.Queue()
        self.playout: Playout | None = None
        self.sent: list[tuple[float, bool]] = []  # (time, voiced) of every agent frame
        self.hung_up = False
        self._ended = False
        self._talk: list[tuple[float, float]] = []  # caller speech intervals, clock times
        self._tasks: list[asyncio.Task[None]] = []

    # -- CallMedia --
    async def media_format(self, timeout: float | None = 5.0) -> MediaFormat:
        return MediaFormat(self.RATE, 20.0)

    async def start_playout(self, timeout: float | None = 5.0) -> Playout:
        if self.playout is None:
            async def send(pcm: bytes) -> None:
                self.sent.append((self.clock.now(), any(pcm)))

            self.playout = Playout(self.clock, self.RATE, 20.0, send)
            self._tasks.append(asyncio.create_task(self.playout.run()))
        return self.playout

    async def receive(self) -> InboundItem:
        return await self._inbound.get()

    async def hangup(self) -> None:
        self.hung_up = True
        self._end(EndReason.AGENT_HANGUP)

    @property
    def is_ended(self) -> bool:
        return self._ended

    # -- the caller --
    def start(self) -> None:
        self._tasks.append(asyncio.create_task(self._frames()))

    def say(self, at: float, seconds: float) -> float:
        """Speak from `at` (clock time) for `seconds`; returns when the speech ends."""
        self._talk.append((at, at + seconds))
        return at + seconds

    def press(self, digit: str) -> None:
        self._inbound.put_nowait(Dtmf(digit))

    def caller_hangup(self) -> None:
        self._end(EndReason.CALLER_HANGUP)

    def agent_talking(self, t0: float, t1: float) -> bool:
        return any(v for t, v in self.sent if t0 <= t < t1)

    def agent_voiced_times(self) -> list[float]:
        return [t for t, v in self.sent if v]

    def close(self) -> None:
        for t in self._tasks:
            t.cancel()

    def _end(self, reason: EndReason) -> None:
        if not self._ended:
            self._ended = True
            self._inbound.put_nowait(CallEnded(reason, ""))

    async def _frames(self) -> None:
        n = 0
        t0 = self.clock.now()
        loud = VOICED.to_bytes(2, "little", signed=True) * (self.FRAME // 2)
        while not self._ended:
            now = self.clock.now()
            voiced = any(a <= now < b for a, b in self._talk)
            self._inbound.put_nowait(Audio(Kind.SLIN16, self.RATE, loud if voiced else bytes(self.FRAME)))
            n += 1
            await self.clock.sleep_until(t0 + n * 0.02)


@dataclass
class FakeControl:
    """Stands in for ARI call control (ari_app.call.CallControl): transfer outcomes on cue
    (the Asterisk tests run the real warm transfer)."""

    transfer_available: bool = True
    outcome: str = "timeout"
    call_id: str = "virtual"
    direction: str = "inbound"
    caller_number: str = "+15550100"
    callee: str = "200"
    transfer_target: str = "PJSIP/fake-desk"
    recording_notice: str | None = None
    agent: str = ""
    ended_by: str = ""
    summaries: list[str] = field(default_factory=list)
    heard_by_person: list[str] = field(default_factory=list)
    sent_on: bool = False

    def drain_digits(self) -> list[str]:
        return []

    async def send_on(self) -> None:
        self.sent_on = True

    async def transfer(self, summary: str, speak: Speak) -> TransferResult:
        self.summaries.append(summary)
        await speak(summary)
        self.heard_by_person.append(summary)
        return TransferResult(self.outcome)

    async def hangup(self) -> None:
        return None



@dataclass
class ScriptedTools:
    """Stands in for a business system behind the agent's webhooks (phoneagent.tools.ToolRunner):
    results, failures and delays on cue, on the call's clock. The real webhooks run against the
    sample backend in tests/tools and the shipments scenario."""

    clock: ManualClock
    results: dict[str, list[ToolResult]] = field(default_factory=dict)
    delay_s: float = 0.1
    calls: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    async def call(self, name: str, arguments: dict[str, Any]) -> ToolResult:
        self.calls.append((name, dict(arguments)))
        await sleep(self.clock, self.delay_s)
        queue = self.results.get(name) or [ToolResult(False, error="no scripted result", kind="unavailable")]
        return queue.pop(0) if len(queue) > 1 else queue[0]


@dataclass
class VirtualRun:
    """One whole call on virtual time: the dialog's task, its fakes, and helpers to drive the
    clock until something has happened."""

    clock: ManualClock
    engines: VirtualEngines
    call: VirtualCall
    dialog: Any  # phoneagent.dialog.session.CallDialog
    task: asyncio.Task[None]
    tools: ScriptedTools | None = None

    def kinds(self) -> list[str]:
        return [k for _, k, _ in self.dialog.events]

    def when(self, kind: str) -> float:
        return float(next(t for t, k, _ in self.dialog.events if k == kind))

    def event(self, kind: str) -> dict[str, Any]:
        return dict(next(d for _, k, d in self.dialog.events if k == kind))

    def agent_texts(self) -> list[str]:
        return [t["text"] for t in self.dialog.turns if t["role"] == "agent"]

    async def until(self, cond: Callable[[], bool], limit: float = 60.0) -> None:
        await self.clock.run(until=cond, limit=limit)

    async def finish(self) -> None:
        if not self.task.done():
            self.call.caller_hangup()
        await self.clock.run(until=self.task.done, limit=30.0)
        self.call.close()
        self.task.result()

    async def abandon(self, *, threads: bool = False) -> None:
        """Teardown after a test that failed half-way: hang up and drive the clock while it ends.
        With `threads` (a real store writes the record's end on its own thread, which virtual
        time cannot see) the clock moves in 10 ms steps with real pauses between, so it does not
        race 30 virtual seconds past a write that a loaded machine has not finished."""
        if not self.task.done():
            self.call.caller_hangup()
            if threads:
                await self.run_beside_threads(until=self.task.done, real_s=30.0)
            else:
                await self.clock.run(until=self.task.done, limit=30.0)
        self.call.close()
        await asyncio.gather(self.task, return_exceptions=True)

    async def run_beside_threads(self, until: Callable[[], bool], real_s: float) -> None:
        """Drive the clock in 10 ms steps with real pauses between until `until()`: for work on
        real threads (the call store), which virtual time cannot see."""
        for _ in range(int(real_s / 0.01)):
            if until():
                return
            await asyncio.sleep(0.01)
            await self.clock.run(0.01)
        raise TimeoutError(f"not done within {real_s:g} s of real time")
