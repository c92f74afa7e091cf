"""Floor: at most one task speaks for the agent, and a stopped reply gets its grace to record
what was heard before the next turn goes on (on virtual time)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from media.clock import ManualClock
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.floor import Floor


class _Ctx:
    """The part of CallContext the floor uses: the clock and the live generations."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.stopped: list[str] = []

    def cancel_live(self, why: str) -> None:
        self.stopped.append(why)


def floor_on(clock: ManualClock) -> Floor:
    return Floor(cast(CallContext, _Ctx(clock)))


async def _records_after(clock: ManualClock, seconds: float, log: list[str]) -> None:
    """A reply that needs `seconds` after the barge-in to record what was heard."""
    await clock.sleep_until(clock.now() + seconds)
    log.append("agent turn recorded")


async def test_the_next_turn_waits_for_a_reply_still_recording_after_a_barge_in_elsewhere() -> None:
    clock, log = ManualClock(), []
    floor = floor_on(clock)
    floor.take(_records_after(clock, 0.6, log))
    barge_in = asyncio.create_task(floor.cancel("barge-in", record_heard=True))  # the backchannel check's own task
    await clock.settle()

    async def next_turn() -> None:
        await floor.cancel("new turn")  # the floor is empty already: it must still wait
        log.append("caller turn committed")

    turn = asyncio.create_task(next_turn())
    await clock.run(until=lambda: turn.done() and barge_in.done(), limit=5.0)
    assert log == ["agent turn recorded", "caller turn committed"]


async def test_a_wedged_reply_is_cancelled_even_when_its_canceller_was_stopped() -> None:
    clock = ManualClock()
    floor = floor_on(clock)
    wedged: asyncio.Task[None] = floor.take(asyncio.Event().wait())  # type: ignore[arg-type]
    barge_in = asyncio.create_task(floor.cancel("barge-in", record_heard=True))
    await clock.run(0.3)
    barge_in.cancel()  # the call ended: its check task is dropped mid-grace
    await asyncio.gather(barge_in, return_exceptions=True)
    assert not wedged.done()
    t0 = clock.now()
    ending = asyncio.create_task(floor.cancel("call ended", record_heard=True))
    await clock.run(until=ending.done, limit=5.0)
    assert wedged.cancelled() and clock.now() - t0 <= Floor.RECORD_GRACE_S + 0.05


async def test_a_holder_cancels_the_floor_from_inside_without_waiting_for_itself() -> None:
    clock = ManualClock()
    floor = floor_on(clock)
    seen: list[Any] = []

    async def handover() -> None:
        await floor.cancel("handover")  # e.g. a reply that hands over: it must not wait for itself
        seen.append("went on")

    task = floor.take(handover())
    await clock.run(until=task.done, limit=1.0)
    assert seen == ["went on"]
