"""The call-control half of the dialog: key presses, handing over to a person, and screening
an outbound answer (person or machine). Split from session.py to keep each file readable; it
uses the dialog's own speaking, recording and cancelling.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from ari_app.call import CallControl
from ari_app.dtmf import DigitEntry
from audiosocket.server import CallSession
from phoneagent.dialog.endpointer import Endpointer
from phoneagent.dialog.handover import handover_summary

if TYPE_CHECKING:
    from audiosocket.clock import Clock
    from audiosocket.playout import Playout
    from models.base import VADStream
    from phoneagent.dialog.context import Conversation
    from phoneagent.dialog.keypad import Keypad
    from phoneagent.dialog.session import AgentConfig, DialogEngines, TurnTiming

log = logging.getLogger(__name__)


class CallFeatures:
    if TYPE_CHECKING:  # provided by CallDialog
        engines: DialogEngines
        config: AgentConfig
        control: CallControl | None
        conversation: Conversation
        keypad: Keypad
        playout: Playout
        clock: Clock
        call_id: str
        rate: int
        vad_rate: int
        vad: VADStream
        endpointer: Endpointer
        outcome: str
        summary: str | None
        _transferring: bool
        _ending: bool
        _last_activity: float
        _reply: asyncio.Task[None] | None

        async def _say(self, text: str, *, role_text: str, record: bool = True, atomic: bool = False) -> None: ...
        async def _cancel_reply(self, why: str, *, record_heard: bool = False) -> None: ...
        async def _respond(self, utterance: bytes, timing: TurnTiming, go: asyncio.Event, keys: str | None = None) -> None: ...
        def _event(self, kind: str, **detail: Any) -> None: ...

    async def _screen(self, session: CallSession) -> bool:
        """Outbound: person or answering machine (phoneagent.dialog.outbound). True: call over."""
        if not self.config.amd:
            return False
        from phoneagent.dialog.outbound import screen_answer

        async def leave(text: str) -> None:
            await self._say(text, role_text="voicemail")

        try:
            result = await screen_answer(session, self.engines, self.rate, self.clock, say=leave,
                                         voicemail_message=self.config.voicemail_message)
        except Exception as exc:  # never let detection lose the call: treat it as a person
            log.warning("call %s: answering-machine detection failed: %r", self.call_id, exc)
            return False
        d = result.decision
        self._event("amd", outcome=result.outcome, verdict=d.kind if d else None, reason=d.reason if d else None,
                    at_s=d.at_s if d else None, heard=result.transcript)
        if result.call_over:
            self.outcome = result.outcome
            self._ending = result.outcome != "caller_hangup"
        return result.call_over


    async def _on_keys(self, entries: list[DigitEntry]) -> None:
        for entry in entries:
            self._event("keypad", digits=entry.digits, ended_by=entry.ended_by, escape=entry.escape)
            self._last_activity = self.clock.now()
            if self._transferring or self._ending:
                continue
            if entry.escape:
                await self._cancel_reply("keypad escape")
                self._reply = asyncio.create_task(self._handover(f"the caller pressed {entry.digits}"))
            elif entry.digits:
                await self._cancel_reply("keypad entry")
                go = asyncio.Event()
                go.set()
                self._reply = asyncio.create_task(self._respond(b"", _timing(endpoint=self.clock.now()), go, keys=entry.digits))

    async def _handover(self, reason: str) -> None:
        """Warm (or blind) transfer through the call control; the caller hears a notice, the
        person hears the summary; if nobody takes the call the caller is back with the agent."""
        ctl, cfg = self.control, self.config
        if ctl is None or not ctl.transfer_available:
            self._event("transfer_unavailable", reason=reason)
            await self._say(cfg.transfer_unavailable, role_text="no transfer")
            return
        await self._say(cfg.transfer_notice, role_text="transfer notice")
        keys = [e.digits for e in self.keypad.entries if e.digits and not e.escape]
        self.summary = handover_summary(self.conversation.transcript(), caller_number=ctl.caller_number, keypad=keys, reason=reason)
        self._transferring = True
        self.playout.clear()
        try:
            result = await ctl.transfer(self.summary, self._speak_to_person)
        finally:
            self._transferring = False
        self._event("transfer", outcome=result.outcome, detail=result.detail)
        if result.caller_left:
            self.outcome = "transferred" if result.outcome != "caller_hangup" else self.outcome
            return  # the agent's leg is being hung up: the call ends for the dialog
        self.endpointer = Endpointer(self.config.endpointer)  # audio during the transfer was not for us
        self.vad = self.engines.vad.stream(self.vad_rate)
        self._last_activity = self.clock.now()
        await self._say(cfg.transfer_failed, role_text="transfer failed")

    async def _speak_to_person(self, text: str) -> None:
        """The summary, to the person being asked (the caller is on hold in another bridge)."""
        try:
            await self._say(text, role_text="summary", record=False)
        except asyncio.CancelledError:
            self.playout.clear()  # the person answered (or hung up) mid-summary: stop now
            raise



def _timing(**kw: float) -> TurnTiming:
    from phoneagent.dialog.session import TurnTiming

    return TurnTiming(**kw)
