"""One call as the ARI controller sees it, and the call-control interface the dialog uses.

The dialog never sees ARI: it gets a `CallControl` (digits, transfer, hang up). `AriCall`
implements it; the controller owns the ARI work behind it. Every channel and bridge the
controller creates for the call is listed here, so tear-down can remove all of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ari_app.controller import AriController
    from ari_app.lease import Lease

Speak = Callable[[str], Awaitable[None]]


@dataclass(frozen=True)
class TransferResult:
    """outcome: accepted | declined | timeout | busy | no_answer | human_hangup | caller_hangup
    | blind | unavailable | failed. The caller is back with the agent unless accepted/blind/caller_hangup."""

    outcome: str
    detail: str = ""

    @property
    def caller_left(self) -> bool:
        return self.outcome in ("accepted", "blind", "caller_hangup")


class CallControl(Protocol):
    """What the dialog may ask of the telephony side."""

    @property
    def call_id(self) -> str: ...
    @property
    def direction(self) -> str: ...  # inbound | outbound
    @property
    def caller_number(self) -> str: ...
    @property
    def callee(self) -> str: ...  # the number dialled: our extension (inbound) or theirs (outbound)
    @property
    def recording_notice(self) -> str | None: ...
    @property
    def agent(self) -> str: ...  # the agent the dialplan asked for ("" = the default)
    @property
    def transfer_available(self) -> bool: ...
    @property
    def transfer_target(self) -> str: ...  # where a transfer goes, for the record ("" if nowhere)
    @property
    def ended_by(self) -> str: ...  # why the telephony side ended the call ("shutdown", ...); "" while it goes on

    def drain_digits(self) -> list[str]: ...

    async def transfer(self, summary: str, speak: Speak) -> TransferResult: ...

    async def hangup(self) -> None: ...

    async def send_on(self) -> None: ...  # the agent cannot take the call: the dialplan's fallback (a queue), else hang up


@dataclass(eq=False)
class AriCall:
    call_id: str  # also the AudioSocket UUID (externalMedia data)
    caller_id: str  # the caller's (or, outbound, the callee's) channel id
    direction: str = "inbound"
    caller_number: str = ""
    callee: str = ""
    agent: str = ""  # a name from ControllerConfig.agents, or "" for the default
    bridge_id: str = ""
    media_id: str = ""  # the externalMedia channel: the agent's leg
    human_id: str = ""  # warm transfer: the human's leg while it exists
    channels: set[str] = field(default_factory=set)  # created by us: hung up on tear-down
    bridges: set[str] = field(default_factory=set)
    recording_name: str = ""
    recording_started_at: float = 0.0  # controller clock, when the bridge recording was asked for
    transferred: str = ""  # "", "warm" (caller and human bridged), "blind"
    ended_by: str = ""  # the controller's tear-down reason, once torn down
    started_at: float = 0.0  # controller clock
    ended_at: float = 0.0  # controller clock, at tear-down
    attached: asyncio.Event = field(default_factory=asyncio.Event)  # AudioSocket session arrived
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # caller bridged to the agent
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    digits: list[str] = field(default_factory=list)
    human_digits: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    controller: AriController | None = field(default=None, repr=False)
    lease: Lease | None = field(default=None, repr=False)  # Asterisk's hang-up deadline while the call is ours

    @property
    def transfer_available(self) -> bool:
        return self.controller is not None and self.controller.config.profile(self.agent).transfer.available

    @property
    def transfer_target(self) -> str:
        if self.controller is None:
            return ""
        return self.controller.config.profile(self.agent).transfer.target

    @property
    def recording_notice(self) -> str | None:
        """Spoken before the greeting when this call's agent records (known from the start)."""
        if self.controller is None:
            return None
        rec = self.controller.config.profile(self.agent).recording
        return rec.notice if rec.enabled else None

    def drain_digits(self) -> list[str]:
        out, self.digits = self.digits, []
        return out

    async def transfer(self, summary: str, speak: Speak) -> TransferResult:
        if self.controller is None:
            return TransferResult("unavailable", "no controller")
        # The ARI steps run in the controller's task: if the agent's side is cancelled (its leg
        # is hung up on accept), the flow still finishes and leaves no bridge behind.
        return await asyncio.shield(self.controller.spawn(self.controller.transfer(self, summary, speak)))

    async def hangup(self) -> None:
        if self.controller is not None:
            await self.controller.teardown(self, "agent_hangup", hang_up_caller=True)

    async def send_on(self) -> None:
        if self.controller is not None:
            # In the controller's task: tearing down the agent's leg may cancel the caller of this.
            await asyncio.shield(self.controller.spawn(self.controller.send_on(self, "busy")))
