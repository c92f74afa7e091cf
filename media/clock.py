"""Clocks passed into timing logic, so tests can run on virtual time instead of the wall clock.

Every timer in the call path (pacing, timeouts, filler delay, watchdog, transfer accept timeout)
goes through a `Clock`: `sleep` and `wait_for` below are asyncio's, on the clock's timeline.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    """Monotonic seconds plus a way to wait for a deadline on that same timeline."""

    def now(self) -> float: ...

    async def sleep_until(self, deadline: float) -> None: ...


class MonotonicClock:
    """The real clock: time.monotonic(), immune to wall-clock jumps (NTP, DST)."""

    def now(self) -> float:
        return time.monotonic()

    async def sleep_until(self, deadline: float) -> None:
        delay = deadline - time.monotonic()
        await asyncio.sleep(delay if delay > 0 else 0)


async def sleep(clock: Clock, seconds: float) -> None:
    await clock.sleep_until(clock.now() + seconds)


async def wait_for(clock: Clock, aw: Awaitable[T], timeout: float | None) -> T:
    """`asyncio.wait_for` on `clock`'s timeline: the awaitable's result, or TimeoutError after
    `timeout` seconds of clock time (the awaitable is then cancelled and awaited). Cancelling
    the caller cancels both."""
    if type(clock) is MonotonicClock:  # the event loop's own timeline: its timer, no extra task
        # Not asyncio.wait_for: on 3.11 it drops a cancellation that lands in the same tick as
        # the result (cpython#86296), and a dropped reply then runs on. asyncio.timeout does not.
        async with asyncio.timeout(timeout):
            return await aw
    task: asyncio.Future[T] = asyncio.ensure_future(aw)
    if timeout is None:
        return await task
    timer = asyncio.ensure_future(sleep(clock, timeout))
    try:
        await asyncio.wait((task, timer), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        await _cancel_all(task, timer)
        raise
    if task.done():
        timer.cancel()
        return task.result()
    await _cancel_all(task)
    if task.done() and not task.cancelled() and task.exception() is None:
        return task.result()  # it finished while being cancelled: keep the result
    raise TimeoutError(f"timed out after {timeout:g} s")


async def wait_any(clock: Clock, futures: Iterable[asyncio.Future[Any]], timeout: float, *,
                   return_when: str = asyncio.FIRST_COMPLETED) -> set[asyncio.Future[Any]]:
    """`asyncio.wait(futures, timeout=..., return_when=...)` on `clock`'s timeline: the done
    ones (an empty set on timeout, unless some were already done). Nothing is cancelled."""
    futs = list(futures)
    pending = set(futs)
    timer = asyncio.ensure_future(sleep(clock, timeout))
    try:
        while pending:
            done, pending = await asyncio.wait({*pending, timer}, return_when=asyncio.FIRST_COMPLETED)
            pending.discard(timer)
            if timer in done or return_when == asyncio.FIRST_COMPLETED:
                break
    finally:
        timer.cancel()
    return {f for f in futs if f.done()}


async def _cancel_all(*futs: asyncio.Future[Any]) -> None:
    for f in futs:
        f.cancel()
    await asyncio.gather(*futs, return_exceptions=True)


class ManualClock:
    """Virtual time for tests: time moves only when a test moves it, and then every sleeper
    whose deadline has come wakes, in deadline order.

    `advance(s)` moves time at once. `run(...)` is the driver for whole-system tests: it lets
    every runnable task run until all are waiting, then jumps to the next sleeper's deadline,
    and repeats, so a 30 s call on virtual time takes milliseconds, and every timestamp it
    observes is exactly what real time would produce. Work in threads (real engines) is not
    seen as pending: use it with asyncio-only fakes.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self._wake_due()

    async def sleep_until(self, deadline: float) -> None:
        if deadline <= self.t:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (deadline, next(self._seq), fut))
        await fut  # cancelled sleepers stay in the heap, skipped when due

    @property
    def next_deadline(self) -> float | None:
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    async def settle(self) -> None:
        """Return once every other task is waiting (on the clock, a future, a queue)."""
        loop: Any = asyncio.get_running_loop()
        quiet = 0
        for _ in range(100_000):
            await asyncio.sleep(0)
            ready = getattr(loop, "_ready", None)  # CPython's run queue; absent: yield a while
            quiet = quiet + 1 if not ready else 0
            if quiet >= (3 if ready is not None else 50):
                return
        raise RuntimeError("ManualClock.settle: tasks never stopped running (a busy loop?)")

    async def run(self, seconds: float | None = None, *, until: Callable[[], bool] | None = None,
                  limit: float = 3600.0) -> None:
        """Drive virtual time: for `seconds`, or until `until()` is true (checked whenever
        everything has settled), at most `limit` seconds. Raises TimeoutError at the limit
        when `until` never came true."""
        end = self.t + (seconds if seconds is not None else limit)
        while True:
            await self.settle()
            if until is not None and until():
                return
            nxt = self.next_deadline
            if nxt is None or nxt > end:
                if until is not None and seconds is None:
                    raise TimeoutError(f"ManualClock.run: condition not met by t={end:.3f} (nothing left to wake)"
                                       if nxt is None else f"ManualClock.run: condition not met within {limit:g} s")
                self.t = max(self.t, end)
                self._wake_due()
                await self.settle()
                return
            self.t = max(self.t, nxt)
            self._wake_due()

    def _wake_due(self) -> None:
        while self._sleepers and self._sleepers[0][0] <= self.t:
            _, _, fut = heapq.heappop(self._sleepers)
            if not fut.done():
                fut.set_result(None)
