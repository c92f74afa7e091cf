"""The calls in progress, as the console's live view shows them: fed by the call store's
writes (the same ones the records and metrics see), pushed to each open live view."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

log = logging.getLogger(__name__)

QUEUE = 256  # updates a slow live view may fall behind by before it is dropped (it reconnects)


@dataclass
class LiveCall:
    call_id: str
    direction: str
    caller: str | None
    callee: str | None
    agent: str
    started_at: str  # ISO 8601, UTC
    turns: list[dict[str, Any]] = field(default_factory=list)  # {role, text, interrupted}
    events: list[dict[str, Any]] = field(default_factory=list)  # the last few: {t_ms, kind}


class LiveCalls:
    def __init__(self, wall_clock: Callable[[], datetime]) -> None:
        self.wall_clock = wall_clock
        self.calls: dict[str, LiveCall] = {}
        self._views: set[asyncio.Queue[dict[str, Any] | None]] = set()

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of updates for one live view, starting with every call now in progress."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(QUEUE)
        queue.put_nowait({"type": "snapshot", "calls": [asdict(c) for c in self.calls.values()]})
        self._views.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._views.discard(queue)

    def close(self) -> None:
        """The service stops: every live view's stream ends."""
        for queue in list(self._views):
            self._drop(queue)

    def started(self, call_id: str, *, direction: str = "inbound", caller: str | None = None, callee: str | None = None,
                agent: str = "", **_: Any) -> None:
        call = LiveCall(str(call_id), direction, caller, callee, agent, self.wall_clock().isoformat())
        self.calls[call.call_id] = call
        self._push({"type": "start", "call": asdict(call)})

    def turn(self, call_id: str, role: str, text: str, *, interrupted: bool = False, **_: Any) -> None:
        call = self.calls.get(str(call_id))
        if call is None:
            return
        line = {"role": role, "text": text, "interrupted": interrupted}
        call.turns.append(line)
        self._push({"type": "turn", "call_id": call.call_id, "turn": line})

    def event(self, call_id: str, t_ms: float, kind: str) -> None:
        call = self.calls.get(str(call_id))
        if call is None:
            return
        entry = {"t_ms": t_ms, "kind": kind}
        call.events = [*call.events[-9:], entry]
        self._push({"type": "event", "call_id": call.call_id, "event": entry})

    def finished(self, call_id: str, *, outcome: str | None = None, end_reason: str = "", **_: Any) -> None:
        if self.calls.pop(str(call_id), None) is not None:
            self._push({"type": "end", "call_id": str(call_id), "outcome": outcome or end_reason})

    def _push(self, update: dict[str, Any]) -> None:
        for queue in list(self._views):
            try:
                queue.put_nowait(update)
            except asyncio.QueueFull:
                log.warning("a console live view fell %d updates behind; dropping it (it reconnects)", QUEUE)
                self._drop(queue)

    def _drop(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._views.discard(queue)
        while not queue.empty():
            queue.get_nowait()
        queue.put_nowait(None)  # the end of this view's stream
