"""The agent's fixed prompts (greeting, reprompt, clarify, filler, fallback): each spoken as one
playout segment, recorded with what the caller actually heard of it."""

from __future__ import annotations

import logging

from media.clock import wait_for
from media.pcm import tone
from models.base import CancelToken
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.chunker import split_text
from phoneagent.dialog.context import SpokenReply
from phoneagent.dialog.record import TurnTiming

log = logging.getLogger(__name__)


class Voice:
    def __init__(self, ctx: CallContext) -> None:
        self.ctx = ctx

    async def say(self, text: str, *, role_text: str, record: bool = True, atomic: bool = False) -> None:
        """Speak `text` and wait until it is played (or cleared by a barge-in).

        Clauses play as soon as each is synthesised. `atomic` (the filler, which can overlap a
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
        playout.flush()
        report = await playout.wait(sid)
        if record:
            heard = ctx.conversation.add_agent_heard(spoken, report.played_ms, report.interrupted)
            await ctx.record.turn("agent", heard, TurnTiming(first_frame=playout.first_sent_at(report.segment_id)),
                                  interrupted=report.interrupted)
        ctx.touch()

    async def fail(self, stage: str, exc: BaseException) -> None:
        """An engine failed or timed out: apologise, then end the call cleanly (never dead air)."""
        ctx = self.ctx
        log.warning("call %s: %s failed: %r", ctx.call_id, stage, exc)
        ctx.record.event("engine_error", stage=stage, error=repr(exc)[:200])
        ctx.state.outcome = "error"
        ctx.playout.clear()
        try:
            await wait_for(ctx.clock, self.say(ctx.config.fallback, role_text="fallback"), ctx.config.step_timeout_s * 2)
        except Exception as exc2:  # the TTS itself is down: a tone is better than silence
            log.error("call %s: fallback prompt failed too: %r", ctx.call_id, exc2)
            await ctx.playout.play(tone(480.0, 400, ctx.rate) + tone(620.0, 400, ctx.rate))
        ctx.state.ending = True
