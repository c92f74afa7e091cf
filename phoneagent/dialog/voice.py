"""The agent's fixed prompts (greeting, reprompt, clarify, filler, fallback): each spoken as one
playout segment, recorded with what the caller actually heard of it."""

from __future__ import annotations

import asyncio
import logging

from media.clock import wait_for
from media.pcm import resample, tone
from models.base import TTS, Cancelled, CancelToken
from models.scheduler import Priority
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.chunker import split_text
from phoneagent.dialog.context import SpokenReply
from phoneagent.dialog.record import TurnTiming

log = logging.getLogger(__name__)


Phrases = dict[tuple[str, int], bytes]  # (text, sample rate) -> synthesised audio


async def synthesise_ahead(tts: TTS, text: str) -> Phrases:
    """`text` in a voice at both AudioSocket rates (slin16, and slin for older Asterisk), made
    at service start: the fallback must be sayable when the TTS itself has failed."""
    pcm = await asyncio.to_thread(lambda: b"".join(c.pcm for c in tts.synthesize(text, 16000)))
    return {(text, 16000): pcm, (text, 8000): resample(pcm, 16000, 8000)}


class Voice:
    def __init__(self, ctx: CallContext, phrases: Phrases | None = None) -> None:
        """`phrases`: fixed phrases already synthesised, shared by an agent's calls (the same
        voice), so each is synthesised once per service, not once per call."""
        self.ctx = ctx
        self._prepared: Phrases = {} if phrases is None else phrases

    async def prepare(self, texts: set[str]) -> None:
        """Synthesise short fixed phrases (fillers) ahead, at background priority, so one can
        start the moment it is needed; a failure only means it is synthesised when used."""
        rate = self.ctx.rate
        for text in sorted(t for t in texts if (t, rate) not in self._prepared):
            pcm = bytearray()
            try:
                async for chunk in self.ctx.engines.speak(text, self.ctx.rate, cancel=CancelToken(), priority=Priority.NORMAL):
                    pcm += chunk.pcm
            except Exception as exc:
                log.info("call %s: preparing %r failed: %r", self.ctx.call_id, text, exc)
                continue
            self._prepared[(text, rate)] = bytes(pcm)

    async def say_prepared(self, text: str) -> None:
        """A filler: played at once from `prepare`'s audio (else synthesised first, in one
        piece), not added to the conversation."""
        pcm = self._prepared.get((text, self.ctx.rate))
        if pcm is None:
            await self.say(text, role_text="filler", record=False, atomic=True)
            return
        playout = self.ctx.playout
        sid = playout.capture(pcm)
        playout.flush()
        await playout.wait(sid)
        self.ctx.touch()

    async def say(self, text: str, *, role_text: str, record: bool = True, atomic: bool = False, timing: TurnTiming | None = None) -> None:
        """Speak `text` and wait until it is played (or cleared by a barge-in).

        Clauses play as soon as each is synthesised. `timing`: the turn this answers (a tool's
        spoken answer), so the record has its latency from the caller's endpoint. `atomic` (the filler, which can overlap a
        reply that is starting) synthesises first and queues it in one step, so no reply audio
        can slip into the prompt's open segment.
        """
        ctx = self.ctx
        playout = ctx.playout
        cancel = CancelToken()
        ctx.live.add(cancel)
        spoken = SpokenReply()
        sid = None
        held = bytearray()
        try:
            for clause in split_text(text):
                ms = 0.0
                speech = ctx.engines.speak(clause, ctx.rate, cancel=cancel)
                try:
                    async for chunk in speech:
                        if cancel.cancelled:
                            break
                        if timing is not None and timing.tts_first_audio is None:
                            timing.tts_first_audio = ctx.clock.now()
                        ms += len(chunk.pcm) / 2 / ctx.rate * 1000
                        if atomic:
                            held += chunk.pcm
                        else:
                            sid = playout.capture(chunk.pcm)
                finally:
                    await speech.aclose()
                if cancel.cancelled:
                    break
                spoken.add_clause(clause, ms)
            if atomic and held and not cancel.cancelled:
                if playout.speaking:  # the reply started meanwhile: no filler needed
                    return
                sid = playout.capture(bytes(held))
        finally:
            ctx.live.discard(cancel)
        if sid is None:
            return
        await self._played(spoken, sid, record=record, timing=timing)

    async def _played(self, spoken: SpokenReply, sid: int, *, record: bool = True, timing: TurnTiming | None = None,
                      warm: bool = True) -> None:
        """Wait until segment `sid` has played (or was cut), then record what was heard of it."""
        ctx, playout = self.ctx, self.ctx.playout
        playout.flush()
        report = await playout.wait(sid)
        if record:
            heard = ctx.conversation.add_agent_heard(spoken, report.played_ms, report.interrupted)
            timing = timing or TurnTiming()  # a reply's own timing (from its endpoint) where given
            timing.first_frame = playout.first_sent_at(report.segment_id)
            await ctx.record.turn("agent", heard, timing, interrupted=report.interrupted)
            if warm:
                ctx.warm()
        ctx.touch()

    async def say_or_fail(self, text: str, *, role_text: str) -> None:
        """A prompt the call cannot go on without (the greeting): if the TTS fails on it, the
        caller gets the fallback and a clean end, not silence until the no-input timer."""
        try:
            await self.say(text, role_text=role_text)
        except Cancelled:
            raise
        except Exception as exc:
            await self.fail("tts", exc)

    async def fail(self, stage: str, exc: BaseException) -> None:
        """An engine failed or timed out: apologise, then end the call cleanly (never dead air).
        The fallback is played from audio synthesised ahead (`prepare`) where there is some,
        so a failed or hung TTS still says it; otherwise synthesised now; a tone if that fails."""
        ctx = self.ctx
        log.warning("call %s: %s failed: %r", ctx.call_id, stage, exc)
        ctx.record.event("engine_error", stage=stage, error=repr(exc)[:200])
        ctx.state.outcome = "error"
        ctx.playout.clear()
        text = ctx.config.fallback
        pcm = self._prepared.get((text, ctx.rate))
        try:
            if pcm is not None:
                await self._play(text, pcm)
            else:
                await wait_for(ctx.clock, self.say(text, role_text="fallback"), ctx.config.step_timeout_s * 2)
        except Exception as exc2:  # the TTS itself is down: a tone is better than silence
            log.error("call %s: fallback prompt failed too: %r", ctx.call_id, exc2)
            await ctx.playout.play(tone(480.0, 400, ctx.rate) + tone(620.0, 400, ctx.rate))
        ctx.state.ending = True

    async def _play(self, text: str, pcm: bytes) -> None:
        """Play audio synthesised ahead and record what the caller heard of it (no warming:
        the call ends on it)."""
        spoken = SpokenReply()
        spoken.add_clause(text, len(pcm) / 2 / self.ctx.rate * 1000)
        await self._played(spoken, self.ctx.playout.capture(pcm), warm=False)
