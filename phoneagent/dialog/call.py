"""The parts of one call that every dialog part works with, built once per call by CallDialog
and passed in explicitly (no mixins, no shared base class)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from ari_app.call import CallControl
from media.clock import Clock
from audiosocket.playout import Playout
from models.base import CancelToken, Message
from phoneagent.dialog.config import AgentConfig, DialogEngines
from phoneagent.dialog.context import Conversation
from phoneagent.dialog.record import Recorder
from phoneagent.dialog.state import CallState

log = logging.getLogger(__name__)


@dataclass
class CallContext:
    call_id: str
    config: AgentConfig
    engines: DialogEngines
    clock: Clock
    rate: int  # the call's sample rate
    playout: Playout
    conversation: Conversation
    record: Recorder
    state: CallState
    control: CallControl | None  # ARI call control; None on a direct AudioSocket call
    system_prompt: str  # the LLM's instructions for this call (actions.system_prompt: the agent's, plus its steps)
    # The caller's "today" (a date slot resolves "tomorrow" and dates without a year against it):
    # the service's local date; the composition root passes its wall clock.
    today: Callable[[], date] = field(default=lambda: datetime.now().astimezone().date())
    hold_llm: bool = False  # hold LLM decoding while a reply's first clause is synthesised (CPU)
    live: set[CancelToken] = field(default_factory=set)  # every generation/synthesis a barge-in must stop
    _warming: asyncio.Future[None] | None = field(default=None, repr=False)

    def cancel_live(self, why: str) -> None:
        for token in list(self.live):
            token.cancel(why)

    def warm(self, saying: str = "") -> None:
        """The agent has spoken (or is starting to say `saying`, e.g. the greeting): evaluate the
        conversation so far into the LLM's cache in the background, so the caller's next turn
        costs only its own words (on a CPU, prefill is most of a small model's time to first
        token). One at a time; failures only cost speed."""
        if self._warming is not None and not self._warming.done():
            return
        messages = self.conversation.messages(self.system_prompt)
        if saying:
            messages.append(Message("assistant", " ".join(saying.split())))
        self._warming = asyncio.ensure_future(self._prefill(messages))

    async def _prefill(self, messages: list[Message]) -> None:
        try:
            await self.engines.prefill(messages, session_key=self.call_id)
        except Exception as exc:  # EngineBusy, a shut-down queue: the next turn just evaluates more
            log.debug("call %s: prefill skipped: %r", self.call_id, exc)

    async def stop_warming(self) -> None:
        if self._warming is not None and not self._warming.done():
            self._warming.cancel()
            await asyncio.gather(self._warming, return_exceptions=True)

    def touch(self) -> None:
        """Something happened: the no-input watchdog starts counting again."""
        self.state.last_activity = self.clock.now()
