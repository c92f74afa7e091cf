"""What every part of one call's dialog may read and change: how it is going (outcome, ending,
transfer), the unhappy-path counters, and when the caller or agent last did something."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from media.clock import Clock, wait_for

log = logging.getLogger(__name__)


@dataclass
class CallState:
    last_activity: float
    outcome: str = "completed"
    summary: str | None = None  # what a person taking the call was told
    ending: bool = False  # the agent ends the call (goodbye said, fallback, machine)
    transferring: bool = False  # the caller is on hold while a person is asked
    clarifications: int = 0  # not understood, in a row
    reprompts: int = 0
    cut_off: str = ""  # the unheard rest of the last interrupted reply


@contextlib.contextmanager
def _expected_end() -> Iterator[None]:
    """Swallow the end of a task we stopped (its CancelledError or error), but never a
    cancellation of the task doing the waiting that arrives meanwhile: that one is re-raised.
    (Counted, not just tested: a task already being cancelled still cleans up in `finally`.)"""
    current = asyncio.current_task()
    before = current.cancelling() if current is not None else 0
    try:
        yield
    except asyncio.CancelledError:
        if current is not None and current.cancelling() > before:
            raise
    except Exception as exc:
        log.debug("stopped task ended with %r", exc)


async def reap(task: asyncio.Future[Any]) -> None:
    """Await a task we cancelled (or that failed)."""
    with _expected_end():
        await task


async def let_finish(clock: Clock, task: asyncio.Future[Any], seconds: float) -> None:
    """Give a task up to `seconds` (clock time) to finish on its own; it is not cancelled here."""
    with _expected_end():
        await wait_for(clock, asyncio.shield(task), seconds)
