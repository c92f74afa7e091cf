"""The clock every timer goes through: ManualClock's virtual time and the clock-based
wait_for / wait_any / sleep that replace asyncio's loop-time timers."""

from __future__ import annotations

import asyncio

import pytest

from media.clock import ManualClock, MonotonicClock, sleep, wait_any, wait_for


async def test_sleepers_wake_in_deadline_order_at_exact_times() -> None:
    clock = ManualClock(10.0)
    woke: list[tuple[str, float]] = []

    async def nap(name: str, seconds: float) -> None:
        await sleep(clock, seconds)
        woke.append((name, clock.now()))

    tasks = [asyncio.create_task(nap(n, s)) for n, s in (("c", 3.0), ("a", 1.0), ("b", 2.0))]
    await clock.run(until=lambda: all(t.done() for t in tasks))
    assert woke == [("a", 11.0), ("b", 12.0), ("c", 13.0)]


async def test_time_moves_only_when_driven() -> None:
    clock = ManualClock(0.0)
    task = asyncio.create_task(sleep(clock, 5.0))
    await clock.settle()
    assert not task.done() and clock.now() == 0.0
    clock.advance(4.9)
    await clock.settle()
    assert not task.done()
    await clock.run(0.2)
    assert task.done() and clock.now() == pytest.approx(5.1)


async def test_run_until_raises_when_nothing_can_make_it_true() -> None:
    clock = ManualClock(0.0)
    with pytest.raises(TimeoutError, match="nothing left to wake"):
        await clock.run(until=lambda: False)


async def test_wait_for_times_out_on_the_clock_and_cancels_the_work() -> None:
    clock = ManualClock(0.0)
    cancelled = asyncio.Event()

    async def slow() -> str:
        try:
            await sleep(clock, 60.0)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "late"

    task = asyncio.create_task(wait_for(clock, slow(), 8.0))
    await clock.run(until=task.done)
    with pytest.raises(TimeoutError):
        task.result()
    assert clock.now() == 8.0 and cancelled.is_set()


async def test_wait_for_returns_the_result_in_time() -> None:
    clock = ManualClock(0.0)

    async def quick() -> str:
        await sleep(clock, 1.0)
        return "done"

    task = asyncio.create_task(wait_for(clock, quick(), 8.0))
    await clock.run(until=task.done)
    assert task.result() == "done" and clock.now() == 1.0
    await clock.run(10.0)  # the timer left nothing behind that fires later


async def test_cancelling_the_waiter_cancels_the_work() -> None:
    clock = ManualClock(0.0)
    inner = asyncio.create_task(sleep(clock, 60.0))
    outer = asyncio.create_task(wait_for(clock, inner, 8.0))
    await clock.run(1.0)
    outer.cancel()
    await asyncio.gather(outer, return_exceptions=True)
    assert outer.cancelled() and inner.cancelled()


async def test_wait_any_first_completed_and_timeout() -> None:
    clock = ManualClock(0.0)
    a = asyncio.ensure_future(sleep(clock, 2.0))
    b = asyncio.ensure_future(sleep(clock, 5.0))
    got = asyncio.create_task(wait_any(clock, {a, b}, 10.0))
    await clock.run(until=got.done)
    assert got.result() == {a} and clock.now() == 2.0 and not b.done()
    none = asyncio.create_task(wait_any(clock, {b}, 1.0))
    await clock.run(until=none.done)
    assert none.result() == set() and clock.now() == 3.0
    both = asyncio.create_task(wait_any(clock, {b}, 10.0, return_when=asyncio.ALL_COMPLETED))
    await clock.run(until=both.done)
    assert both.result() == {b} and clock.now() == 5.0


async def test_the_real_clock_times_out_too() -> None:
    with pytest.raises(TimeoutError):
        await wait_for(MonotonicClock(), asyncio.sleep(5), 0.01)


@pytest.mark.parametrize("ticks", range(4))
async def test_a_cancel_that_lands_as_the_awaited_work_finishes_is_not_lost(ticks: int) -> None:
    """Python 3.11's asyncio.wait_for returns the result and drops a cancellation that arrives
    in the same loop tick as the result (cpython#86296): a dropped speculative reply then ran on
    and the call hung. Our wait_for must raise CancelledError at every offset."""
    loop = asyncio.get_running_loop()
    inner: asyncio.Future[int] = loop.create_future()

    async def waiter() -> str:
        await wait_for(MonotonicClock(), inner, 10.0)
        return "the cancellation was swallowed"

    task = asyncio.create_task(waiter())
    for _ in range(ticks):
        await asyncio.sleep(0)
    inner.set_result(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
