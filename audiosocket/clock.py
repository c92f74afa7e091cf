"""Clocks passed into timing logic, so tests can run on virtual time instead of the wall clock."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


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


class ManualClock:
    """Virtual time for tests: sleeping jumps the clock to the deadline and yields once.

    Tasks that only wait through this clock run as fast as the CPU allows, yet every timestamp
    they observe is exactly what real pacing would produce.
    """

    def __init__(self, start: float = 1000.0) -> None:
        self.t = start

    def now(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds

    async def sleep_until(self, deadline: float) -> None:
        if deadline > self.t:
            self.t = deadline
        await asyncio.sleep(0)
