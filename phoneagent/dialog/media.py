"""What the dialog needs of a call's media connection (audiosocket.server.CallSession has it):
inbound audio and digits, paced playout, hangup, and the clock the call runs on."""

from __future__ import annotations

import uuid
from typing import Protocol

from media.clock import Clock
from audiosocket.playout import Playout
from audiosocket.server import InboundItem, MediaFormat


class CallMedia(Protocol):
    call_id: uuid.UUID
    clock: Clock

    async def media_format(self, timeout: float | None = 5.0) -> MediaFormat: ...

    async def start_playout(self, timeout: float | None = 5.0) -> Playout: ...

    async def receive(self) -> InboundItem: ...

    async def hangup(self) -> None: ...

    @property
    def is_ended(self) -> bool: ...
