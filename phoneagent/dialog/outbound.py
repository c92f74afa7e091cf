"""The first seconds of an answered outbound call: a person or an answering machine?

Runs before the dialog's greeting. The callee's audio feeds the MachineListener (VAD timing,
beep, partial STT) which decides within 3 s of answer. A person (or "unknown": silence, which
is usually a person waiting) gets the outbound greeting; a machine gets the configured message
after its beep, or a hangup when there is no message to leave.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from ari_app.amd import AmdConfig, AmdDecision
from audiosocket.clock import Clock
from audiosocket.protocol import Audio
from audiosocket.server import CallEnded, CallSession
from phoneagent.dialog.machine import MachineEngines, MachineListener


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


async def screen_answer(session: CallSession, engines: MachineEngines, rate: int, clock: Clock, *,
                        say: Callable[[str], Awaitable[None]], voicemail_message: str | None,
                        amd: AmdConfig | None = None, max_greeting_s: float = 40.0) -> Screening:
    listener = MachineListener(engines, rate, amd)
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


async def _listen(session: CallSession, listener: MachineListener, clock: Clock, t0: float,
                  done: Callable[[], bool], limit_s: float) -> str:
    """Feed audio until `done()` or `limit_s` after answer; "ended" if the far end hung up."""
    while not done() and clock.now() - t0 < limit_s:
        try:
            item = await asyncio.wait_for(session.receive(), 0.1)
        except TimeoutError:  # no audio: time still passes (the 3 s deadline holds)
            listener.poll(clock.now() - t0)
            continue
        if isinstance(item, CallEnded):
            return "ended"
        if isinstance(item, Audio):
            await listener.feed(item.pcm)
        listener.poll(clock.now() - t0)
    return "done"
