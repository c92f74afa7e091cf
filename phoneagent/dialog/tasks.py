"""Stopping the dialog's own tasks: awaiting what we cancelled without swallowing a cancellation
of the task that waits (which must still run its clean-up and then stop)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from media.clock import Clock, wait_for

log = logging.getLogger(__name__)


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


async def stop(task: asyncio.Future[Any] | None) -> None:
    """Cancel a task of ours if it is still running, and await its end."""
    if task is not None and not task.done():
        task.cancel()
        await reap(task)


async def let_finish(clock: Clock, task: asyncio.Future[Any], seconds: float) -> None:
    """Give a task up to `seconds` (clock time) to finish on its own; it is not cancelled here."""
    with _expected_end():
        await wait_for(clock, asyncio.shield(task), seconds)
