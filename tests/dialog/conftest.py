"""The virtual-time call fixture shared by the dialog tests (test_dialog_virtual.py and the
tests of single behaviours beside it)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from media.clock import ManualClock
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog
from tests.fakes import FakeControl, Heard, Said, VirtualCall, VirtualEngines, VirtualRun

GREETING = "Hello there."  # 2 words: 0.5 s of audio


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Any]]:
    """`await start(heard=..., said=..., **AgentConfig fields)`: a call on virtual time, its
    greeting played. `engine`: attributes of the VirtualEngines to set before the call starts."""
    runs: list[VirtualRun] = []

    async def make(heard: list[Heard] | None = None, said: list[Said] | None = None, control: FakeControl | None = None,
                   turn_p: list[float] | None = None, store: Any = None, phrases: Any = None,
                   engine: dict[str, Any] | None = None, **cfg: Any) -> VirtualRun:
        clock = ManualClock(0.0)
        engines = VirtualEngines(clock, heard=heard or [], said=said or [], turn_p=turn_p or [])
        for name, value in (engine or {}).items():
            setattr(engines, name, value)
        call = VirtualCall(clock)
        dialog = CallDialog(engines, AgentConfig(**{"greeting": GREETING, **cfg}), control=control, store=store, phrases=phrases)
        call.start()
        run = VirtualRun(clock, engines, call, dialog, asyncio.create_task(dialog.run(call)))
        runs.append(run)
        await run.until(lambda: bool(dialog.turns))  # the greeting has been played
        return run

    yield make
    for run in runs:
        await run.abandon()
