"""The first seconds of an answered outbound call: a person or an answering machine?

Runs before the dialog's greeting. The callee's audio feeds the MachineListener (VAD timing,
beep, partial STT) which decides within 3 s of answer. A person (or "unknown": silence, which
is usually a person waiting) gets the outbound greeting; a machine gets the configured message
after its beep, or a hangup when there is no message to leave.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from phoneagent.dialog.amd.rules import AmdConfig, AmdDecision
from media.clock import Clock, wait_for
from audiosocket.protocol import Audio
from audiosocket.server import CallEnded
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.amd.listener import MachineEngines, MachineListener
from phoneagent.dialog.media import CallMedia
from phoneagent.dialog.voice import Voice

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Screening:
    """outcome: human | unknown (the dialog goes on) | machine_message_left | machine_hangup |
    caller_hangup (the call is over)."""

    outcome: str
    decision: AmdDecision | None
    transcript: str = ""

    @property
    def call_over(self) -> bool:
        return self.outcome not in ("human", "unknown")


async def screen(ctx: CallContext, voice: Voice, session: CallMedia) -> bool:
    """Screen an answered outbound call before the greeting; True when the call is over
    (a machine, or a hangup). Detection failing never loses the call: it counts as a person."""
    cfg = ctx.config
    if not cfg.amd:
        return False

    async def leave(text: str) -> None:
        await voice.say(text, role_text="voicemail")

    try:
        result = await screen_answer(session, ctx.engines, ctx.rate, ctx.clock, say=leave, voicemail_message=cfg.voicemail_message)
    except Exception as exc:
        log.warning("call %s: answering-machine detection failed: %r", ctx.call_id, exc)
        return False
    d = result.decision
    ctx.record.event("amd", outcome=result.outcome, verdict=d.kind if d else None, reason=d.reason if d else None,
                     at_s=d.at_s if d else None, heard=result.transcript)
    ctx.state.amd_result = result.outcome
    if result.call_over:
        ctx.state.outcome = result.outcome
        ctx.state.ending = result.outcome != "caller_hangup"
    return result.call_over


async def screen_answer(session: CallMedia, engines: MachineEngines, rate: int, clock: Clock, *,
                        say: Callable[[str], Awaitable[None]], voicemail_message: str | None,
                        amd: AmdConfig | None = None, max_greeting_s: float = 40.0) -> Screening:
    listener = MachineListener(engines, rate, amd, clock=clock)
    t0 = clock.now()
    try:
        decision = await _listen(session, listener, clock, t0, lambda: listener.decision is not None, 10.0)
        if decision == "ended":
            return Screening("caller_hangup", listener.decision, listener.transcript)
        verdict = listener.decision
        assert verdict is not None
        if verdict.kind != "machine":
            return Screening(verdict.kind, verdict, listener.transcript)
        if not voicemail_message:
            return Screening("machine_hangup", verdict, listener.transcript)
        # Wait for the beep (or the end of the greeting), then leave the message.
        ended = await _listen(session, listener, clock, t0, listener.greeting_over, max_greeting_s)
        if ended == "ended":
            return Screening("caller_hangup", verdict, listener.transcript)
        await say(voicemail_message)
        return Screening("machine_message_left", verdict, listener.transcript)
    finally:
        await listener.close()


async def _listen(session: CallMedia, listener: MachineListener, clock: Clock, t0: float,
                  done: Callable[[], bool], limit_s: float) -> str:
    """Feed audio until `done()` or `limit_s` after answer; "ended" if the far end hung up."""
    while not done() and clock.now() - t0 < limit_s:
        try:
            item = await wait_for(clock, session.receive(), 0.1)
        except TimeoutError:  # no audio: time still passes (the 3 s deadline holds)
            listener.poll(clock.now() - t0)
            continue
        if isinstance(item, CallEnded):
            return "ended"
        if isinstance(item, Audio):
            await listener.feed(item.pcm)
        listener.poll(clock.now() - t0)
    return "done"
