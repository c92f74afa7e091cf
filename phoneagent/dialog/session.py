"""One call's real-time dialog: VAD -> endpointer -> STT -> LLM tokens -> clauses -> TTS -> playout.

Every stage streams into the next: the first clause is synthesised and played while the LLM is
still generating. The loop owns the clock; the pure parts (endpointer, chunker, context) get
timestamps. What the caller does decides what runs:
- end of turn: a reply task runs STT, streams the LLM, speaks clause by clause;
- barge-in (caller talks over the agent for longer than a backchannel): playout is cleared at
  once, generation and synthesis are cancelled, and the context keeps only what was heard;
- silence: a reprompt after `no_input_s`, then a goodbye;
- a slow step: a short filler; an engine failure or timeout: a spoken fallback, then a clean end;
- key presses: collected into entries (a caller turn "(keypad) 1234"); the escape entry ("0")
  or asking for a person hands the call over (warm transfer with a summary) when the call has
  call control (ARI), and returns to the caller if nobody takes it.
The call's record and each turn's timings go to the store (if one is given); a store failure is
logged and never ends the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncGenerator, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Protocol

from audiosocket.pcm import StreamResampler, tone
from audiosocket.playout import Playout
from audiosocket.protocol import Audio, Dtmf
from ari_app.call import CallControl
from ari_app.dtmf import DigitConfig, DigitEntry
from audiosocket.server import CallEnded, CallSession
from db import AsyncCallStore, TurnTimings
from models.base import VAD, AudioChunk, Cancelled, CancelToken, Message, Token, Transcript
from models.scheduler import EngineBusy, Priority
from phoneagent.dialog.chunker import ClauseChunker
from phoneagent.dialog.context import Conversation, SpokenReply
from phoneagent.dialog.features import CallFeatures
from phoneagent.dialog.handover import wants_human
from phoneagent.dialog.keypad import Keypad
from phoneagent.dialog.endpointer import (
    Backchannel,
    BargeIn,
    Endpointer,
    EndpointerConfig,
    EndOfTurn,
    SpeculationCancelled,
    SpeculativeEndpoint,
    SpeechDiscarded,
    SpeechStarted,
)

log = logging.getLogger(__name__)


class DialogEngines(Protocol):
    """What the dialog needs from the engines (models.engines.Engines provides it)."""

    vad: VAD

    @property
    def llm_on_cpu(self) -> bool: ...

    @property
    def context_tokens(self) -> int: ...

    def count_tokens(self, messages: Sequence[Message]) -> int: ...

    async def transcribe(self, pcm: bytes, sample_rate: int) -> Transcript: ...

    def reply_tokens(self, messages: Sequence[Message], *, cancel: CancelToken, session_key: str | None = None, max_tokens: int = 96,
                     gate: threading.Event | None = None) -> AsyncGenerator[Token, None]: ...

    def speak(self, text: str, sample_rate: int, *, cancel: CancelToken, priority: Priority = Priority.TURN) -> AsyncGenerator[AudioChunk, None]: ...


@dataclass(frozen=True)
class AgentConfig:
    """Per-agent behaviour: prompts, timers, thresholds."""

    name: str = "default"
    system_prompt: str = "You are a helpful, brief phone agent. Answer in one or two short sentences."
    greeting: str = "Hello, thanks for calling. How can I help you today?"
    reprompt: str = "Are you still there? How can I help?"
    goodbye_no_input: str = "I haven't heard anything, so I'll end the call now. Goodbye."
    clarify: str = "Sorry, I didn't catch that. Could you say it again?"
    resume_prefix: str = "Sorry, as I was saying,"  # before the unheard rest after a false-alarm barge-in
    busy: str = "Sorry, our lines are very busy. Could you say that again in a moment?"
    fallback: str = "Sorry, I'm having technical trouble. Please call back in a few minutes. Goodbye."
    filler: str = "One moment."
    outbound_greeting: str = "Hello, this is the phone agent calling. Is now a good time to talk?"
    amd: bool = True  # outbound: detect answering machines in the first 3 s
    voicemail_message: str | None = None  # left after the beep; None: hang up on a machine
    transfer_notice: str = "Please hold while I connect you to a colleague."
    transfer_unavailable: str = "Sorry, I can't transfer you right now, but I'm happy to keep helping."
    transfer_failed: str = "Sorry, nobody could take your call right now. I'm still here. How can I help?"
    no_input_s: float = 8.0
    max_reprompts: int = 1
    max_clarifications: int = 2  # in a row; then the fallback (a loop)
    filler_after_s: float = 1.5
    stt_timeout_s: float = 6.0
    first_token_timeout_s: float = 8.0
    step_timeout_s: float = 8.0  # any later token or TTS chunk
    max_reply_tokens: int = 64
    min_confidence: float = 0.25
    preroll_s: float = 0.3  # audio kept before speech start (VAD onset is late by a window)
    pause_on_onset: bool = True  # hold playout at speech onset; resume if it was a backchannel
    speculate: bool = True  # start STT/LLM/TTS at a short pause, speak once the endpoint is final
    # Hold LLM decoding while the first clause is synthesised: on a CPU-only box the two compete
    # for cores and the first audio comes ~2x later. None: only when the LLM runs on the CPU.
    hold_llm_for_first_audio: bool | None = None
    endpointer: EndpointerConfig = field(default_factory=EndpointerConfig)
    dtmf: DigitConfig = field(default_factory=DigitConfig)


@dataclass
class TurnTiming:
    """Clock times (seconds) of one turn; converted to ms from call start when stored."""

    speech_end: float | None = None
    endpoint: float | None = None
    stt_done: float | None = None
    llm_first_token: float | None = None
    tts_first_audio: float | None = None
    first_frame: float | None = None
    barge_in: float | None = None


class CallDialog(CallFeatures):
    """Run with `await CallDialog(...).run(session)`; it returns when the call ends."""

    VAD_RATES = (8000, 16000)

    def __init__(self, engines: DialogEngines, config: AgentConfig | None = None, *, store: AsyncCallStore | None = None,
                 control: CallControl | None = None) -> None:
        self.engines = engines
        self.config = config or AgentConfig()
        self.store = store
        self.control = control  # ARI call control; None on a direct AudioSocket call
        self.summary: str | None = None  # what a person taking the call was told
        self._transferring = False
        self._cut_off = ""  # the unheard rest of the last interrupted reply
        # The history's budget is the LLM's real context minus room for a reply, in its tokens.
        self.conversation = Conversation.for_llm(engines.context_tokens, self.config.max_reply_tokens, engines.count_tokens)
        self.turns: list[dict[str, Any]] = []  # in-memory copy of what was stored (tests, demo)
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self.outcome = "completed"
        self._reply: asyncio.Task[None] | None = None
        self._cancels: set[CancelToken] = set()  # every live generation/synthesis of this call
        self._spec: tuple[asyncio.Task[None], float, asyncio.Event, TurnTiming] | None = None
        self.endpointer_turn_start: float | None = None
        self._barge_in_at: float | None = None
        self._store_tasks: set[asyncio.Task[None]] = set()  # event writes in flight (kept referenced)
        self._clarifications = 0
        self._reprompts = 0
        self._ending = False

    # --- the call ---
    async def run(self, session: CallSession) -> None:
        self.session = session
        self.call_id = str(session.call_id)
        self.clock = session.clock
        fmt = await session.media_format()
        self.rate = fmt.sample_rate
        self.playout: Playout = await session.start_playout()
        self.vad_rate = self.rate if self.rate in self.VAD_RATES else 16000
        self.vad = self.engines.vad.stream(self.vad_rate)
        self._vad_resampler = StreamResampler(self.rate, self.vad_rate)  # pass-through at 8/16 kHz
        self.endpointer = Endpointer(self.config.endpointer)
        hold = self.config.hold_llm_for_first_audio
        self._hold_llm = self.engines.llm_on_cpu if hold is None else hold
        self.t0 = self.clock.now()
        self._media_s = 0.0  # caller audio received, seconds: the endpointer's timeline
        self._audio = bytearray()  # caller audio since the last turn (plus pre-roll)
        self._audio_start_s = 0.0
        self._last_activity = self.t0
        self.keypad = Keypad(self.config.dtmf, self.clock)
        ctl = self.control
        if ctl is None or ctl.direction == "inbound":  # an outbound call was stored by the dialler
            await self._store("start_call", self.call_id, direction="inbound", caller=(ctl.caller_number or None) if ctl else None,
                              agent=self.config.name, started_at=datetime.now(timezone.utc), media=f"slin{self.rate // 1000}/{fmt.frame_ms:g}ms")
        opening, over = self.config.greeting, False
        if ctl is not None and ctl.direction == "outbound":
            opening, over = self.config.outbound_greeting, await self._screen(session)
        if ctl is not None and ctl.recording_notice:
            opening = f"{ctl.recording_notice} {opening}"
        if not over:
            self._reply = asyncio.create_task(self._say(opening, role_text="greeting"))
        end_reason = "caller_hangup"
        next_check = self.clock.now()
        try:
            while not self._ending and not over:
                # Audio normally arrives every 20 ms, but an unbridged or muted channel sends
                # nothing: the watchdog runs on its own cadence either way.
                if self.clock.now() >= next_check:
                    next_check = self.clock.now() + 0.25
                    await self._watchdog()
                    if self._ending:
                        break
                try:
                    item = await asyncio.wait_for(session.receive(), 0.25)
                except TimeoutError:
                    continue
                if isinstance(item, CallEnded):
                    end_reason = item.reason.value
                    break
                if isinstance(item, Audio):
                    await self._on_audio(item.pcm)
                elif isinstance(item, Dtmf):
                    await self._on_keys(self.keypad.press("audiosocket", item.digit))
                if self.control is not None:
                    for digit in self.control.drain_digits():
                        await self._on_keys(self.keypad.press("ari", digit))
                await self._on_keys(self.keypad.poll())
            if self._ending:
                end_reason = "agent_hangup"
        finally:
            # Hangup mid-sentence: stop playout first so the reply task records what was heard.
            self.playout.clear()
            await self._cancel_reply("call ended", record_heard=True)
            await self._store("finish_call", self.call_id, ended_at=datetime.now(timezone.utc), end_reason=end_reason,
                              outcome=self.outcome, summary=self.summary)
        if self._ending and not session.is_ended:
            await session.hangup()

    # --- caller audio ---
    async def _on_audio(self, pcm: bytes) -> None:
        if self._transferring:  # the caller is on hold; what arrives is the person being asked
            self._media_s += len(pcm) / 2 / self.rate
            self._audio_start_s = self._media_s
            return
        self._audio += pcm
        vad_pcm = self._vad_resampler.process(pcm)
        t_chunk_start = self._media_s
        self._media_s += len(pcm) / 2 / self.rate
        probs = self.vad.process(vad_pcm)
        win = self.vad.window_ms / 1000.0
        # windows end at the buffered-audio boundary; older ones end earlier in this chunk
        ends = [self._media_s - (len(probs) - 1 - i) * win - self.vad.buffered_samples / self.vad_rate for i in range(len(probs))]
        for prob, t in zip(probs, ends):
            for ev in self.endpointer.feed(prob, max(t, t_chunk_start), agent_speaking=self.playout.speaking):
                await self._on_event(ev)
        self._trim_audio()

    def _trim_audio(self) -> None:
        """Keep only the pre-roll while nobody is talking (bounded memory on long calls)."""
        if not self.endpointer.in_turn:
            keep = int(self.config.preroll_s * self.rate) * 2
            if len(self._audio) > keep * 2:
                drop = len(self._audio) - keep
                del self._audio[:drop]
                self._audio_start_s += drop / 2 / self.rate

    async def _on_event(self, ev: object) -> None:
        if isinstance(ev, SpeechStarted):
            self._last_activity = self.clock.now()
            self.endpointer_turn_start = ev.t_start  # a turn never restarts mid-way (no new SpeechStarted)
            if self.config.pause_on_onset and self.playout.speaking:
                # Hold the agent at the first voiced window (~one frame): stop fast if this
                # becomes a barge-in, lose nothing if it was a cough or an "mm-hm".
                self.playout.pause()
        elif isinstance(ev, (Backchannel, SpeechDiscarded)):
            if self.playout.paused:
                self.playout.resume()
                self._event("resumed", after=type(ev).__name__)
        elif isinstance(ev, BargeIn):
            if self.playout.speaking or self._reply is not None:
                self._event("barge_in", t_speech_start=ev.t_speech_start)
                self._barge_in_at = self.clock.now()
                self.playout.clear()  # stop within one frame
                await self._cancel_reply("barge-in", record_heard=True)
        elif isinstance(ev, SpeculativeEndpoint):
            if self.config.speculate:
                # A short pause: run STT, the LLM and TTS now, but hold the audio until the
                # endpoint is final. Speech resuming throws the work away.
                await self._drop_speculation()
                go = asyncio.Event()
                timing = TurnTiming()
                task = asyncio.create_task(self._respond(self._utterance(ev.t_speech_end), timing, go))
                self._spec = (task, ev.t_speech_end, go, timing)
        elif isinstance(ev, SpeculationCancelled):
            await self._drop_speculation()
        elif isinstance(ev, EndOfTurn):
            now = self.clock.now()
            barge = self._barge_in_at if ev.barge_in else None
            spec, self._spec = self._spec, None
            await self._cancel_reply("new turn")
            if spec is not None and spec[1] == ev.t_speech_end and not spec[0].done():
                task, _, go, timing = spec  # the speculation heard exactly this turn: use it
                timing.speech_end, timing.endpoint, timing.barge_in = now - ev.latency_s, now, barge
                self._event("speculation_used")
            else:
                if spec is not None:
                    spec[0].cancel()
                    self._event("speculation_dropped", why="stale")
                go = asyncio.Event()
                timing = TurnTiming(speech_end=now - ev.latency_s, endpoint=now, barge_in=barge)
                task = asyncio.create_task(self._respond(self._utterance(ev.t_speech_end), timing, go))
            go.set()
            self._reply = task
            self._audio.clear()
            self._audio_start_s = self._media_s
            self._last_activity = now

    def _utterance(self, t_speech_end: float) -> bytes:
        """The caller's audio of the open turn, from pre-roll to just after `t_speech_end`."""
        t_start = self.endpointer_turn_start if self.endpointer_turn_start is not None else self._audio_start_s
        start = int(max(0.0, t_start - self.config.preroll_s - self._audio_start_s) * self.rate) * 2
        end = int(max(0.0, t_speech_end + 0.1 - self._audio_start_s) * self.rate) * 2
        return bytes(self._audio[start:end])

    async def _drop_speculation(self) -> None:
        spec, self._spec = self._spec, None
        if spec is not None and not spec[0].done():
            spec[0].cancel()
            self._event("speculation_dropped", why="speech resumed")
            with contextlib.suppress(BaseException):
                await spec[0]

    # --- the agent's turn ---
    async def _respond(self, utterance: bytes, timing: TurnTiming, go: asyncio.Event, keys: str | None = None) -> None:
        """STT -> LLM -> TTS for one caller turn. Until `go` is set (the endpoint is final) it
        may compute but must not speak, record or touch the conversation: it is speculative.
        `keys`: a keypad entry instead of speech (no STT)."""
        cfg = self.config
        try:
            if keys is not None:
                said = f"(keypad) {keys}"
                tr = Transcript(text=said, normalized=said, confidence=1.0, no_speech_prob=0.0, language="", audio_s=0.0, decode_s=0.0)
            else:
                tr = await asyncio.wait_for(self.engines.transcribe(utterance, self.rate), cfg.stt_timeout_s)
        except EngineBusy:
            await go.wait()
            self._event("busy", engine="stt")
            await self._say(cfg.busy, role_text="busy")
            return
        except Exception as exc:
            await go.wait()
            await self._fail("stt", exc)
            return
        timing.stt_done = self.clock.now()
        text = tr.normalized.strip()
        if not text or tr.confidence < cfg.min_confidence:
            await go.wait()  # (a speculative turn learns only now whether it was a barge-in)
            if not text and timing.barge_in is not None and self._cut_off:
                # The "interruption" had no words (a cough, a door): go on where the agent was cut.
                self._event("false_alarm_resume")
                resume, self._cut_off = self._cut_off, ""
                await self._say(f"{cfg.resume_prefix} {resume}", role_text="resume")
                return
            self._clarifications += 1
            self._event("unclear", text=tr.text, confidence=round(tr.confidence, 3))
            if self._clarifications > cfg.max_clarifications:
                await self._fail("loop", RuntimeError("caller not understood repeatedly"))
                return
            await self._say(cfg.clarify, role_text="clarify")
            return
        if self.control is not None and wants_human(text):
            await go.wait()
            self.conversation.add_user(text)
            await self._record("caller", text, timing, stt_confidence=tr.confidence)
            await self._handover("the caller asked for a person")
            return
        messages = self.conversation.messages(cfg.system_prompt, pending_user=text)

        async def commit() -> None:
            await go.wait()
            self._clarifications = 0
            self._reprompts = 0
            self._cut_off = ""  # the caller moved on: nothing to pick up again
            self.conversation.add_user(text)
            await self._record("caller", text, timing, stt_confidence=tr.confidence)

        try:
            await self._stream_reply(messages, timing, go, commit)
        except asyncio.CancelledError:
            raise
        except Cancelled:  # barge-in or hangup stopped an engine mid-step: not a failure
            return
        except EngineBusy:
            await go.wait()
            self._event("busy", engine="llm/tts")
            await self._say(cfg.busy, role_text="busy")
        except Exception as exc:
            await go.wait()
            await self._fail("llm/tts", exc)

    async def _stream_reply(self, messages: list[Message], timing: TurnTiming, go: asyncio.Event, commit: Callable[[], Coroutine[Any, Any, None]]) -> None:
        cfg = self.config
        cancel = CancelToken()
        reply = SpokenReply()
        chunker = ClauseChunker(min_words_first=2, max_words_first=6)
        clauses: asyncio.Queue[str | None] = asyncio.Queue()
        seg: list[int] = []
        committed: asyncio.Task[None] = asyncio.create_task(commit())
        gate = threading.Event()  # set: the LLM may decode
        gate.set()
        tts = asyncio.create_task(self._speak_clauses(clauses, cancel, reply, seg, timing, go, gate))
        filler = asyncio.create_task(self._filler_after(cfg.filler_after_s, seg, cancel, go))
        try:
            tokens = self.engines.reply_tokens(messages, cancel=cancel, session_key=self.call_id, max_tokens=cfg.max_reply_tokens, gate=gate)
            async with contextlib.aclosing(tokens):
                first = True
                while True:
                    timeout = cfg.first_token_timeout_s if first else cfg.step_timeout_s
                    try:
                        tok = await asyncio.wait_for(anext(tokens), timeout)
                    except StopAsyncIteration:
                        break
                    if first:
                        timing.llm_first_token = self.clock.now()
                        first = False
                    for clause in chunker.push(tok.text):
                        clauses.put_nowait(clause)
                        if self._hold_llm and timing.tts_first_audio is None:
                            gate.clear()  # the first clause's TTS gets the CPU; _speak_clauses reopens
            if not cancel.cancelled:
                for clause in chunker.flush():
                    clauses.put_nowait(clause)
            clauses.put_nowait(None)
            await tts
        finally:
            self._cancels.discard(cancel)
            filler.cancel()
            if not committed.done():
                committed.cancel()
            if not tts.done():
                tts.cancel()
                with contextlib.suppress(BaseException):
                    await tts
        await committed
        if not seg:  # nothing was spoken (empty reply or cancelled before audio)
            if not cancel.cancelled:
                await self._say(cfg.clarify, role_text="empty reply")
            return
        self.playout.flush()
        report = await self.playout.wait(seg[0])
        timing.first_frame = self.playout.first_sent_at(seg[0])
        heard = self.conversation.add_agent_heard(reply, report.played_ms, report.interrupted)
        self._cut_off = reply.unheard_text(report.played_ms) if report.interrupted else ""
        await self._record("agent", heard, timing, interrupted=report.interrupted)
        self._last_activity = self.clock.now()

    async def _speak_clauses(self, clauses: asyncio.Queue[str | None], cancel: CancelToken, reply: SpokenReply, seg: list[int], timing: TurnTiming,
                             go: asyncio.Event, gate: threading.Event) -> None:
        try:
            priority = Priority.TURN  # the first clause: the caller is waiting in silence
            while (clause := await clauses.get()) is not None:
                ms = 0.0
                speech = self.engines.speak(clause, self.rate, cancel=cancel, priority=priority)
                priority = Priority.NORMAL  # later clauses have the earlier ones' audio as slack
                async with contextlib.aclosing(speech):
                    while True:
                        try:
                            chunk = await asyncio.wait_for(anext(speech), self.config.step_timeout_s)
                        except StopAsyncIteration:
                            break
                        if timing.tts_first_audio is None:
                            timing.tts_first_audio = self.clock.now()
                        gate.set()
                        if not go.is_set():  # speculative: hold the audio until the endpoint is final
                            await go.wait()
                            self._cancels.add(cancel)  # from now on a barge-in must stop this reply
                        if cancel.cancelled:
                            return
                        sid = self.playout.capture(chunk.pcm)
                        if not seg:
                            seg.append(sid)
                        ms += len(chunk.pcm) / 2 / self.rate * 1000
                reply.add_clause(clause, ms)
        finally:
            gate.set()  # a failed or cancelled first clause never leaves the LLM held

    async def _filler_after(self, delay: float, seg: list[int], cancel: CancelToken, go: asyncio.Event) -> None:
        """A slow LLM prefill or tool: say something short rather than leave silence."""
        await go.wait()
        self._cancels.add(cancel)
        await asyncio.sleep(delay)
        if not seg and not cancel.cancelled and not self.playout.speaking:
            self._event("filler")
            await self._say(self.config.filler, role_text="filler", record=False, atomic=True)

    async def _say(self, text: str, *, role_text: str, record: bool = True, atomic: bool = False) -> None:
        """Speak a fixed prompt as one segment (greeting, reprompt, fallback...).

        Clauses play as soon as each is synthesised. `atomic` (the filler, which can overlap a
        reply that is starting) synthesises first and queues it in one step, so no reply audio
        can slip into the prompt's open segment.
        """
        cancel = CancelToken()
        self._cancels.add(cancel)
        nbytes, sid = 0, None
        held = bytearray()
        try:
            speech = self.engines.speak(text, self.rate, cancel=cancel)
            async with contextlib.aclosing(speech):
                async for chunk in speech:
                    if cancel.cancelled:
                        break
                    nbytes += len(chunk.pcm)
                    if atomic:
                        held += chunk.pcm
                    else:
                        sid = self.playout.capture(chunk.pcm)
            if atomic and held and not cancel.cancelled:
                if self.playout.speaking:  # the reply started meanwhile: no filler needed
                    return
                sid = self.playout.capture(bytes(held))
        finally:
            self._cancels.discard(cancel)
        if sid is None:
            return
        self.playout.flush()
        report = await self.playout.wait(sid)
        if record:
            reply = SpokenReply()
            reply.add_clause(text, nbytes / 2 / self.rate * 1000)
            heard = self.conversation.add_agent_heard(reply, report.played_ms, report.interrupted)
            await self._record("agent", heard, TurnTiming(first_frame=self.playout.first_sent_at(report.segment_id)), interrupted=report.interrupted)
        self._last_activity = self.clock.now()

    async def _fail(self, stage: str, exc: BaseException) -> None:
        """An engine failed or timed out: apologise, then end the call cleanly (never dead air)."""
        log.warning("call %s: %s failed: %r", self.call_id, stage, exc)
        self._event("engine_error", stage=stage, error=repr(exc)[:200])
        self.outcome = "error"
        self.playout.clear()
        try:
            await asyncio.wait_for(self._say(self.config.fallback, role_text="fallback"), self.config.step_timeout_s * 2)
        except Exception as exc2:  # the TTS itself is down: a tone is better than silence
            log.error("call %s: fallback prompt failed too: %r", self.call_id, exc2)
            await self.playout.play(tone(480.0, 400, self.rate) + tone(620.0, 400, self.rate))
        self._ending = True

    async def _cancel_reply(self, why: str, *, record_heard: bool = False) -> None:
        for token in list(self._cancels):
            token.cancel(why)
        task, self._reply = self._reply, None
        if task is not None and not task.done() and task is not asyncio.current_task():
            if record_heard:
                # let it record what was heard: playout was cleared, its waiter resolves now
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(task), 1.0)
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    async def _watchdog(self) -> None:
        busy = (self.playout.speaking or (self._reply is not None and not self._reply.done()) or self.endpointer.in_turn
                or self._transferring or bool(self.keypad.pending))
        if busy or self.clock.now() - self._last_activity < self.config.no_input_s:
            return
        if self._reprompts < self.config.max_reprompts:
            self._reprompts += 1
            self._event("reprompt", n=self._reprompts)
            self._last_activity = self.clock.now()
            self._reply = asyncio.create_task(self._say(self.config.reprompt, role_text="reprompt"))
        else:
            self._event("no_input_hangup")
            self.outcome = "no_input"
            await self._say(self.config.goodbye_no_input, role_text="goodbye")
            self._ending = True

    # --- records ---
    def _ms(self, t: float | None) -> float | None:
        return None if t is None else round((t - self.t0) * 1000, 1)

    def _event(self, kind: str, **detail: Any) -> None:
        t = self.clock.now()
        self.events.append((t, kind, detail))
        task = asyncio.ensure_future(self._store("add_event", self.call_id, self._ms(t) or 0.0, kind, detail or None))
        self._store_tasks.add(task)
        task.add_done_callback(self._store_tasks.discard)

    async def _record(self, role: str, text: str, timing: TurnTiming, **kw: Any) -> None:
        timings = TurnTimings(
            speech_end_ms=self._ms(timing.speech_end), endpoint_ms=self._ms(timing.endpoint), stt_done_ms=self._ms(timing.stt_done),
            llm_first_token_ms=self._ms(timing.llm_first_token), tts_first_audio_ms=self._ms(timing.tts_first_audio),
            first_frame_ms=self._ms(timing.first_frame), barge_in_ms=self._ms(timing.barge_in),
        )
        self.turns.append({"role": role, "text": text, "timings": timings, **kw})
        await self._store("add_turn", self.call_id, role, text, timings=timings, **kw)

    async def _store(self, method: str, *args: Any, **kw: Any) -> None:
        if self.store is None:
            return
        try:
            await getattr(self.store, method)(*args, **kw)
        except Exception:  # a broken database must never end a live call
            log.exception("call %s: store.%s failed", self.call_id, method)

