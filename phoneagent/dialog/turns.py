"""Turn-taking: the caller's audio through VAD and the endpointer, and what each endpointer
event makes the agent do.

- speech onset while the agent talks: hold playout (~one frame); a backchannel resumes it;
- speech over the agent long enough to interrupt but short enough to be an acknowledgement:
  still on hold; its words, transcribed at the first pause, decide: "mm-hmm", "yeah", "okay"
  resume the agent where it stopped (no turn), anything else is a barge-in;
- barge-in: playout cleared at once, the reply cancelled, the context keeps what was heard;
- a short pause: a speculative reply starts (STT, LLM, first clause) but waits to speak, and
  the end-of-turn model (where the agent uses it) scores the turn so far on its own worker;
- end of turn: the speculation is used if it heard exactly this turn, else a fresh reply.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from media.clock import wait_for
from media.pcm import StreamResampler
from models.base import VAD, Transcript, VADStream
from phoneagent.dialog.ahead import WordsAhead
from phoneagent.dialog.backchannel import acknowledged
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.endpointer import (
    Backchannel,
    BargeIn,
    Endpointer,
    EndpointerConfig,
    EndOfTurn,
    OverlapHeld,
    SpeculationCancelled,
    SpeculativeEndpoint,
    SpeechDiscarded,
    SpeechStarted,
)
from phoneagent.dialog.floor import Floor
from phoneagent.dialog.record import TurnTiming
from phoneagent.dialog.reply import Reply
from phoneagent.dialog.tasks import stop
from phoneagent.dialog.unfinished import sounds_unfinished

VAD_RATES = (8000, 16000)


class CallerAudio:
    """The caller's audio since the last turn (plus pre-roll), on the media timeline: seconds
    of audio received, which is what the endpointer's times are."""

    def __init__(self, vad: VAD, rate: int, preroll_s: float, endpointer: EndpointerConfig) -> None:
        self.vad_engine = vad
        self.rate = rate
        self.vad_rate = rate if rate in VAD_RATES else 16000
        self.preroll_s = preroll_s
        self.endpointer_config = endpointer
        self._resampler = StreamResampler(rate, self.vad_rate)  # pass-through at 8/16 kHz
        self.media_s = 0.0
        self._audio = bytearray()
        self._audio_start_s = 0.0
        self.turn_start: float | None = None  # speech start of the open turn
        self.restart()

    def restart(self) -> None:
        """Fresh VAD and endpointer state (after a transfer: that audio was not for us)."""
        self.vad: VADStream = self.vad_engine.stream(self.vad_rate)
        self.endpointer = Endpointer(self.endpointer_config)

    @property
    def in_turn(self) -> bool:
        return self.endpointer.in_turn

    def skip(self, pcm: bytes) -> None:
        """Audio that is not the caller's turn (the person asked during a transfer)."""
        self.media_s += len(pcm) / 2 / self.rate
        self._audio_start_s = self.media_s

    def feed(self, pcm: bytes, agent_speaking: Callable[[], bool]) -> Iterator[object]:
        """One chunk of caller audio -> the endpointer's events, in order. Lazy: whether the
        agent is speaking is read per VAD window, after the caller reacted to the last event."""
        self._audio += pcm
        vad_pcm = self._resampler.process(pcm)
        t_chunk_start = self.media_s
        self.media_s += len(pcm) / 2 / self.rate
        probs = self.vad.process(vad_pcm)
        win = self.vad.window_ms / 1000.0
        # windows end at the buffered-audio boundary; older ones end earlier in this chunk
        ends = [self.media_s - (len(probs) - 1 - i) * win - self.vad.buffered_samples / self.vad_rate for i in range(len(probs))]
        for prob, t in zip(probs, ends):
            for ev in self.endpointer.feed(prob, max(t, t_chunk_start), agent_speaking=agent_speaking()):
                if isinstance(ev, SpeechStarted):
                    self.turn_start = ev.t_start  # a turn never restarts mid-way (no new SpeechStarted)
                yield ev
        self._trim()

    def utterance(self, t_speech_end: float) -> bytes:
        """The caller's audio of the open turn, from pre-roll to just after `t_speech_end`."""
        t_start = self.turn_start if self.turn_start is not None else self._audio_start_s
        start = int(max(0.0, t_start - self.preroll_s - self._audio_start_s) * self.rate) * 2
        end = int(max(0.0, t_speech_end + 0.1 - self._audio_start_s) * self.rate) * 2
        return bytes(self._audio[start:end])

    def turn_taken(self) -> None:
        """The open turn went to a reply: start collecting the next one."""
        self._audio.clear()
        self._audio_start_s = self.media_s

    def _trim(self) -> None:
        """Keep only the pre-roll while nobody is talking (bounded memory on long calls). Not
        while a run is pending either: a run too short to be a turn yet may become one, and
        its pre-roll (the speech start's fade-in, which whisper needs to hear a short "stop")
        is then already in the buffer. Kept: pre-roll plus one VAD window, because the next
        run can start up to one window before the audio received (the VAD's partial window)."""
        if self.endpointer.idle:
            keep = int((self.preroll_s + self.vad.window_ms / 1000.0) * self.rate) * 2
            if len(self._audio) > keep * 2:
                drop = len(self._audio) - keep
                del self._audio[:drop]
                self._audio_start_s += drop / 2 / self.rate


@dataclass
class Speculation:
    reply: Reply
    t_speech_end: float  # the pause it started at; used only if the turn ends exactly there


class ReplyFactory(Protocol):
    def __call__(self, utterance: bytes, timing: TurnTiming, transcript: Transcript | None = None) -> Reply: ...


@dataclass
class Heard:
    """The transcript of the open turn's audio up to `t_speech_end` (the backchannel check's),
    so the reply to that turn does not transcribe it again."""

    t_speech_end: float
    transcript: Transcript


class TurnTaking:
    def __init__(self, ctx: CallContext, audio: CallerAudio, floor: Floor, make_reply: ReplyFactory) -> None:
        self.ctx = ctx
        self.audio = audio
        self.floor = floor
        self.make_reply = make_reply
        self.speculation: Speculation | None = None
        self.check: asyncio.Task[Transcript | None] | None = None  # the words of held speech
        self.scoring: asyncio.Task[None] | None = None  # the end-of-turn model at the last pause
        self.heard: Heard | None = None
        self.ahead = WordsAhead(ctx)
        self._barge_in_at: float | None = None

    async def on_audio(self, pcm: bytes) -> None:
        if self.ctx.state.transferring:  # the caller is on hold; what arrives is the person being asked
            self.audio.skip(pcm)
            return
        playout = self.ctx.playout
        for ev in self.audio.feed(pcm, lambda: playout.speaking):
            await self.on_event(ev)
        audio = self.audio
        if audio.in_turn and audio.turn_start is not None and not audio.endpointer.held and self.speculation is None and not playout.speaking:
            self.ahead.on_speech(audio.media_s - audio.turn_start, lambda: audio.utterance(audio.media_s))

    async def on_event(self, ev: object) -> None:
        ctx, cfg, playout = self.ctx, self.ctx.config, self.ctx.playout
        if isinstance(ev, SpeechStarted):
            ctx.touch()
            self.heard = None
            if cfg.pause_on_onset and playout.speaking:
                # Hold the agent at the first voiced window (~one frame): stop fast if this
                # becomes a barge-in, lose nothing if it was a cough or an "mm-hm".
                playout.pause()
        elif isinstance(ev, (Backchannel, SpeechDiscarded)):
            if playout.paused:
                playout.resume()
                ctx.record.event("resumed", after=type(ev).__name__)
        elif isinstance(ev, OverlapHeld):
            ctx.record.event("overlap_held", t_speech_start=ev.t_speech_start)
        elif isinstance(ev, BargeIn):
            await self._drop_check()
            await self._barge_in(ev.t_speech_start)
        elif isinstance(ev, SpeculativeEndpoint):
            await self.ahead.end()  # the reply's own STT and LLM come first now
            await self._drop_scoring()
            if cfg.end_of_turn_model and ctx.engines.has_turn_model and not self.audio.endpointer.held:
                self.scoring = asyncio.create_task(self._score(self.audio.utterance(ev.t_speech_end), ev.t_speech_end))
            if self.audio.endpointer.held:
                # Speech over the agent paused: are these words an acknowledgement?
                await self._drop_check()
                self.check = asyncio.create_task(self._check_held(self.audio.utterance(ev.t_speech_end), ev.t_speech_end))
            elif cfg.speculate:
                # A short pause: run STT, the LLM and TTS now, but hold the audio until the
                # endpoint is final. Speech resuming throws the work away.
                await self.drop_speculation("speech resumed")
                self._speculate(ev.t_speech_end)
        elif isinstance(ev, SpeculationCancelled):
            await self._drop_scoring()
            await self._drop_check()
            await self.drop_speculation("speech resumed")
        elif isinstance(ev, EndOfTurn):
            await self._end_of_turn(ev)

    async def _score(self, pcm: bytes, t_speech_end: float) -> None:
        """The end-of-turn model on the turn so far; its verdict moves this pause's endpoint."""
        ctx = self.ctx
        t0 = ctx.clock.now()
        try:
            p = await ctx.engines.end_of_turn(pcm, ctx.rate)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the silence rule still ends the turn
            ctx.record.event("turn_model_failed", error=repr(exc))
            return
        verdict = self.audio.endpointer.turn_probability(p, t_speech_end)
        ctx.record.event("turn_model", p=round(p, 3), verdict=verdict or "unsure", ms=round((ctx.clock.now() - t0) * 1000))

    async def _drop_scoring(self) -> None:
        scoring, self.scoring = self.scoring, None
        await stop(scoring)

    async def _barge_in(self, t_speech_start: float) -> None:
        ctx, playout = self.ctx, self.ctx.playout
        if playout.speaking or self.floor.task is not None:
            ctx.record.event("barge_in", t_speech_start=t_speech_start)
            self._barge_in_at = ctx.clock.now()
            playout.clear()  # stop within one frame
            await self.floor.cancel("barge-in", record_heard=True)

    def _speculate(self, t_speech_end: float) -> None:
        reply = self.make_reply(self.audio.utterance(t_speech_end), TurnTiming(), transcript=self._transcript(t_speech_end))
        if self.ctx.config.unfinished_words:
            reply.on_transcript = lambda tr: self._words_at_pause(tr, t_speech_end)
        reply.start()
        self.speculation = Speculation(reply, t_speech_end)

    def _words_at_pause(self, tr: Transcript, t_speech_end: float) -> None:
        """Words that stop mid-sentence ("I want to") hold the turn open at this pause: the
        caller is still thinking. The endpointer ignores words of a pause speech went on from."""
        if sounds_unfinished(tr.normalized, self.ctx.config.language):
            self.audio.endpointer.hint(False, t_speech_end)

    def _transcript(self, t_speech_end: float) -> Transcript | None:
        heard = self.heard
        return heard.transcript if heard is not None and heard.t_speech_end == t_speech_end else None

    # --- speech held over the agent: acknowledgement or interruption ---
    async def _check_held(self, pcm: bytes, t_speech_end: float) -> Transcript | None:
        """Transcribe the held speech and act on its words if it is still held: resume the agent
        (an acknowledgement is no turn) or let the barge-in go ahead. None: STT failed."""
        ctx, cfg = self.ctx, self.ctx.config
        try:
            tr: Transcript | None = await wait_for(ctx.clock, ctx.engines.transcribe(pcm, ctx.rate), cfg.stt_timeout_s)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # no words to judge by: the caller did talk over the agent
            ctx.record.event("backchannel_check_failed", error=repr(exc))
            tr = None
        if tr is not None:
            self.heard = Heard(t_speech_end, tr)
        if not self.audio.endpointer.held:
            return tr  # the turn ended first: _end_of_turn decides
        self.check = None  # (done: nothing to cancel from here on)
        seconds = t_speech_end - (self.audio.turn_start or t_speech_end)
        if self._acknowledged(tr, seconds):
            self.audio.endpointer.dismiss()
            self._resume(tr, seconds)
        else:
            barge = self.audio.endpointer.confirm()
            assert barge is not None
            await self._barge_in(barge.t_speech_start)
            if cfg.speculate and self.speculation is None and self.audio.endpointer.in_turn:
                self._speculate(t_speech_end)
        return tr

    def _acknowledged(self, tr: Transcript | None, seconds: float) -> bool:
        cfg = self.ctx.config
        return acknowledged(tr, seconds, language=cfg.language, extra=cfg.backchannels, barge_in_min_s=cfg.endpointer.barge_in_min_s)

    def _resume(self, tr: Transcript | None, seconds: float) -> None:
        ctx = self.ctx
        ctx.record.event("backchannel", text=(tr.normalized.strip() or tr.withheld) if tr is not None else "", seconds=round(seconds, 2))
        self.heard = None
        self.audio.turn_taken()
        if ctx.playout.paused:
            ctx.playout.resume()

    async def _drop_check(self) -> None:
        check, self.check = self.check, None
        await stop(check)

    async def close(self) -> None:
        """The call is over: no check, no scoring, no speculation outlives it."""
        await self.ahead.end()
        await self._drop_scoring()
        await self._drop_check()
        await self.drop_speculation("call ended")

    async def _end_of_turn(self, ev: EndOfTurn) -> None:
        ctx = self.ctx
        await self.ahead.end()
        await self._drop_scoring()
        if ev.verdict or ev.unfinished:  # the model ended it sooner or held it open; or its words held it open
            ctx.record.event("end_of_turn", verdict=ev.verdict, unfinished_words=ev.unfinished, silence_ms=round(ev.latency_s * 1000))
        check, self.check = self.check, None
        if check is not None:
            # Held speech ended before its words were known: they decide whether it is a turn.
            tr = await check
            seconds = ev.t_speech_end - ev.t_speech_start
            if self._acknowledged(tr, seconds):
                self._resume(tr, seconds)
                return
            await self._barge_in(ev.t_speech_start)
        now = ctx.clock.now()
        barge = self._barge_in_at if ev.barge_in else None
        spec, self.speculation = self.speculation, None
        await self.floor.cancel("new turn")
        reply: Reply
        if spec is not None and spec.t_speech_end == ev.t_speech_end and spec.reply.task is not None and not spec.reply.task.done():
            reply = spec.reply  # the speculation heard exactly this turn: use it
            t = reply.timing
            t.speech_end, t.endpoint, t.barge_in = now - ev.latency_s, now, barge
            ctx.record.event("speculation_used")
        else:
            if spec is not None:
                await spec.reply.drop()
                ctx.record.event("speculation_dropped", why="stale")
            reply = self.make_reply(self.audio.utterance(ev.t_speech_end), TurnTiming(speech_end=now - ev.latency_s, endpoint=now, barge_in=barge),
                                    transcript=self._transcript(ev.t_speech_end))
            reply.start()
        self.heard = None
        reply.release()
        assert reply.task is not None
        self.floor.take(reply.task)
        self.audio.turn_taken()
        ctx.touch()

    async def drop_speculation(self, why: str) -> None:
        spec, self.speculation = self.speculation, None
        if spec is not None and spec.reply.task is not None and not spec.reply.task.done():
            ctx = self.ctx
            ctx.record.event("speculation_dropped", why=why)
            await spec.reply.drop()
