"""The parts of one call that every dialog part works with, built once per call by CallDialog
and passed in explicitly (no mixins, no shared base class)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ari_app.call import CallControl
from media.clock import Clock
from audiosocket.playout import Playout
from models.base import CancelToken
from phoneagent.dialog.config import AgentConfig, DialogEngines
from phoneagent.dialog.context import Conversation
from phoneagent.dialog.record import Recorder
from phoneagent.dialog.state import CallState


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
    hold_llm: bool = False  # hold LLM decoding while a reply's first clause is synthesised (CPU)
    live: set[CancelToken] = field(default_factory=set)  # every generation/synthesis a barge-in must stop

    def cancel_live(self, why: str) -> None:
        for token in list(self.live):
            token.cancel(why)

    def touch(self) -> None:
        """Something happened: the no-input watchdog starts counting again."""
        self.state.last_activity = self.clock.now()
