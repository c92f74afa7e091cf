"""Turn-taking: the caller's audio through VAD and the endpointer, and what each endpointer
event makes the agent do.

- speech onset while the agent talks: hold playout (~one frame); a backchannel resumes it;
- barge-in: playout cleared at once, the reply cancelled, the context keeps what was heard;
- a short pause: a speculative reply starts (STT, LLM, first clause) but waits to speak;
- end of turn: the speculation is used if it heard exactly this turn, else a fresh reply.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from media.pcm import StreamResampler
from models.base import VAD, VADStream
from phoneagent.dialog.call import CallContext
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
from phoneagent.dialog.floor import Floor
from phoneagent.dialog.record import TurnTiming
from phoneagent.dialog.reply import Reply

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
        """Keep only the pre-roll while nobody is talking (bounded memory on long calls)."""
        if not self.endpointer.in_turn:
            keep = int(self.preroll_s * self.rate) * 2
            if len(self._audio) > keep * 2:
                drop = len(self._audio) - keep
                del self._audio[:drop]
                self._audio_start_s += drop / 2 / self.rate


@dataclass
class Speculation:
    reply: Reply
    t_speech_end: float  # the pause it started at; used only if the turn ends exactly there


ReplyFactory = Callable[[bytes, TurnTiming], Reply]


class TurnTaking:
    def __init__(self, ctx: CallContext, audio: CallerAudio, floor: Floor, make_reply: ReplyFactory) -> None:
        self.ctx = ctx
        self.audio = audio
        self.floor = floor
        self.make_reply = make_reply
        self.speculation: Speculation | None = None
        self._barge_in_at: float | None = None

    async def on_audio(self, pcm: bytes) -> None:
        if self.ctx.state.transferring:  # the caller is on hold; what arrives is the person being asked
            self.audio.skip(pcm)
            return
        playout = self.ctx.playout
        for ev in self.audio.feed(pcm, lambda: playout.speaking):
            await self.on_event(ev)

    async def on_event(self, ev: object) -> None:
        ctx, cfg, playout = self.ctx, self.ctx.config, self.ctx.playout
        if isinstance(ev, SpeechStarted):
            ctx.touch()
            if cfg.pause_on_onset and playout.speaking:
                # Hold the agent at the first voiced window (~one frame): stop fast if this
                # becomes a barge-in, lose nothing if it was a cough or an "mm-hm".
                playout.pause()
        elif isinstance(ev, (Backchannel, SpeechDiscarded)):
            if playout.paused:
                playout.resume()
                ctx.record.event("resumed", after=type(ev).__name__)
        elif isinstance(ev, BargeIn):
            if playout.speaking or self.floor.task is not None:
                ctx.record.event("barge_in", t_speech_start=ev.t_speech_start)
                self._barge_in_at = ctx.clock.now()
                playout.clear()  # stop within one frame
                await self.floor.cancel("barge-in", record_heard=True)
        elif isinstance(ev, SpeculativeEndpoint):
            if cfg.speculate:
                # A short pause: run STT, the LLM and TTS now, but hold the audio until the
                # endpoint is final. Speech resuming throws the work away.
                await self.drop_speculation("speech resumed")
                reply = self.make_reply(self.audio.utterance(ev.t_speech_end), TurnTiming())
                reply.start()
                self.speculation = Speculation(reply, ev.t_speech_end)
        elif isinstance(ev, SpeculationCancelled):
            await self.drop_speculation("speech resumed")
        elif isinstance(ev, EndOfTurn):
            await self._end_of_turn(ev)

    async def _end_of_turn(self, ev: EndOfTurn) -> None:
        ctx = self.ctx
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
            reply = self.make_reply(self.audio.utterance(ev.t_speech_end), TurnTiming(speech_end=now - ev.latency_s, endpoint=now, barge_in=barge))
            reply.start()
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
