"""Handing the call to a person: warm (or blind) transfer through the call control. The caller
hears a notice, the person hears a summary in the agent's voice (so the caller never repeats
themselves); if nobody takes the call, the caller is back with the agent, who says so."""

from __future__ import annotations

import asyncio

from phoneagent.dialog.call import CallContext
from phoneagent.dialog.handover import handover_summary
from phoneagent.dialog.keypad import Keypad
from phoneagent.dialog.turns import CallerAudio
from phoneagent.dialog.voice import Voice


class Handover:
    def __init__(self, ctx: CallContext, voice: Voice, audio: CallerAudio, keypad: Keypad) -> None:
        self.ctx = ctx
        self.voice = voice
        self.audio = audio
        self.keypad = keypad

    async def run(self, reason: str) -> None:
        ctx, cfg, state = self.ctx, self.ctx.config, self.ctx.state
        ctl = ctx.control
        if ctl is None or not ctl.transfer_available:
            ctx.record.event("transfer_unavailable", reason=reason)
            await self.voice.say(cfg.transfer_unavailable, role_text="no transfer")
            return
        await self.voice.say(cfg.transfer_notice, role_text="transfer notice")
        keys = [e.digits for e in self.keypad.entries if e.digits and not e.escape]
        state.summary = handover_summary(ctx.conversation.transcript(), caller_number=ctl.caller_number, keypad=keys, reason=reason)
        state.disposition, state.transfer_target = reason, ctl.transfer_target or None
        state.transferring = True
        ctx.playout.clear()
        try:
            result = await ctl.transfer(state.summary, self._speak_to_person)
        finally:
            state.transferring = False
        ctx.record.event("transfer", outcome=result.outcome, detail=result.detail)
        if result.caller_left:
            state.outcome = "transferred" if result.outcome != "caller_hangup" else state.outcome
            return  # the agent's leg is being hung up: the call ends for the dialog
        self.audio.restart()  # audio during the transfer was not for us
        ctx.touch()
        await self.voice.say(cfg.transfer_failed, role_text="transfer failed")

    async def _speak_to_person(self, text: str) -> None:
        """The summary, to the person being asked (the caller is on hold in another bridge)."""
        try:
            await self.voice.say(text, role_text="summary", record=False)
        except asyncio.CancelledError:
            self.ctx.playout.clear()  # the person answered (or hung up) mid-summary: stop now
            raise
