"""One call's record: its turns (with per-turn timings) and events, kept in memory (tests,
demo) and written to the store. A store failure is logged and never ends the call; times are
stored as ms from the call's start on the call's clock, wall-clock stamps come from the store."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from collections.abc import Coroutine
from typing import Any

from media.clock import Clock
from db import AsyncCallStore, TurnTimings

log = logging.getLogger(__name__)


@dataclass
class TurnTiming:
    """Clock times (seconds) of one turn; converted to ms from call start when stored."""

    speech_end: float | None = None
    endpoint: float | None = None
    stt_done: float | None = None
    llm_first_token: float | None = None
    tts_first_audio: float | None = None
    first_frame: float | None = None
    barge_in: float | None = None


class Recorder:
    def __init__(self, call_id: str, clock: Clock, store: AsyncCallStore | None) -> None:
        self.call_id = call_id
        self.clock = clock
        self.store = store
        self.t0 = clock.now()
        self.turns: list[dict[str, Any]] = []
        self.events: list[tuple[float, str, dict[str, Any]]] = []
        self._writes: set[asyncio.Task[None]] = set()  # event writes in flight (kept referenced)

    def ms(self, t: float | None) -> float | None:
        return None if t is None else round((t - self.t0) * 1000, 1)

    def event(self, kind: str, /, **detail: Any) -> None:
        """Something happened now (barge-in, filler, transfer...): recorded without waiting."""
        t = self.clock.now()
        self.events.append((t, kind, detail))
        self._spawn(self.write("add_event", self.call_id, self.ms(t) or 0.0, kind, detail or None))

    async def turn(self, role: str, text: str, timing: TurnTiming, **kw: Any) -> None:
        await self.write("add_turn", self.call_id, role, text, timings=self._keep(role, text, timing, kw), **kw)

    def turn_now(self, role: str, text: str, timing: TurnTiming, **kw: Any) -> None:
        """As `turn`, for a task that is being cancelled and must not wait: kept in memory at
        once, written to the store in the background."""
        self._spawn(self.write("add_turn", self.call_id, role, text, timings=self._keep(role, text, timing, kw), **kw))

    def _keep(self, role: str, text: str, timing: TurnTiming, kw: dict[str, Any]) -> TurnTimings:
        timings = TurnTimings(
            speech_end_ms=self.ms(timing.speech_end), endpoint_ms=self.ms(timing.endpoint), stt_done_ms=self.ms(timing.stt_done),
            llm_first_token_ms=self.ms(timing.llm_first_token), tts_first_audio_ms=self.ms(timing.tts_first_audio),
            first_frame_ms=self.ms(timing.first_frame), barge_in_ms=self.ms(timing.barge_in),
        )
        self.turns.append({"role": role, "text": text, "timings": timings, **kw})
        return timings

    def _spawn(self, write: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(write)
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def write(self, method: str, *args: Any, **kw: Any) -> None:
        if self.store is None:
            return
        try:
            await getattr(self.store, method)(*args, **kw)
        except Exception:  # a broken database must never end a live call
            log.exception("call %s: store.%s failed", self.call_id, method)
