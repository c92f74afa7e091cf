"""Caller memory: a caller's earlier calls, from the real call store, reach the agent at the
start of the next call from the same number (however it is written), and only when the agent
opts in. The dialog runs on virtual time with the scripted engines; the store is real SQLite."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from db import AsyncCallStore, CallStore
from media.clock import ManualClock
from phoneagent.dialog.config import AgentConfig, CallerMemory
from phoneagent.dialog.memory import LOOKUP
from phoneagent.dialog.session import CallDialog
from tests.fakes import FakeControl, VirtualCall, VirtualEngines, VirtualRun

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def seed(url: str) -> dict[str, str]:
    ids = {k: str(uuid.uuid4()) for k in ("yesterday", "last_month", "other_caller")}
    with CallStore(url) as store:
        y = ids["yesterday"]
        store.start_call(y, direction="inbound", caller="+1 (555) 010-0123", agent="shipments", started_at=NOW - timedelta(days=1))
        store.add_turn(y, "caller", "Is my order four five seven two delayed? It was supposed to come on Monday.")
        store.add_event(y, 3000.0, "tool_call", {"name": "order_status", "ok": True, "arguments": {"order_id": "4572"},
                                                  "result": {"status": "delayed", "eta": "2026-12-09"}})
        store.finish_call(y, end_reason="transferred", outcome="transferred", summary="Order 4572 is late; the caller wants a refund.",
                          ended_at=NOW - timedelta(days=1) + timedelta(minutes=2))
        old = ids["last_month"]
        store.start_call(old, direction="inbound", caller="15550100123", agent="shipments", started_at=NOW - timedelta(days=45))
        store.finish_call(old, end_reason="caller_hangup", outcome="completed", ended_at=NOW - timedelta(days=45) + timedelta(minutes=1))
        o = ids["other_caller"]
        store.start_call(o, direction="inbound", caller="+15559990000", agent="shipments", started_at=NOW - timedelta(hours=2))
        store.finish_call(o, end_reason="caller_hangup", outcome="completed", ended_at=NOW - timedelta(hours=1))
    return ids


async def call_with(tmp_path: Path, memory: CallerMemory | None) -> tuple[VirtualRun, AsyncCallStore]:
    url = f"sqlite:///{tmp_path}/calls.db"
    seed(url)
    store = AsyncCallStore(url)
    clock = ManualClock(0.0)
    engines = VirtualEngines(clock)
    call = VirtualCall(clock)
    dialog = CallDialog(engines, AgentConfig(greeting="Hello.", caller_memory=memory), store=store,
                        control=FakeControl(caller_number="+15550100123"), wall_clock=lambda: NOW)
    call.start()
    run = VirtualRun(clock, engines, call, dialog, asyncio.create_task(dialog.run(call)))
    await run.run_beside_threads(until=lambda: bool(dialog.turns), real_s=2.0)  # the store answers on its own thread
    return run, store


async def test_the_last_calls_from_this_number_reach_the_agent(tmp_path: Path) -> None:
    run, store = await call_with(tmp_path, CallerMemory(calls=3, within_days=30))
    try:
        history = run.dialog.conversation.history
        result = next(m for m in history if m.role == "tool" and m.name == LOOKUP)
        earlier = json.loads(result.content)["earlier_calls"]
        assert len(earlier) == 1  # yesterday's; last month's is outside 30 days, the other number is not this caller
        assert earlier[0]["outcome"] == "transferred" and earlier[0]["summary"].startswith("Order 4572 is late")
        assert earlier[0]["caller_said"].startswith("Is my order four five seven two delayed?")
        assert earlier[0]["tools"] == [{"tool": "order_status", "arguments": {"order_id": "4572"},
                                        "result": {"status": "delayed", "eta": "2026-12-09"}}]
        assert run.event("caller_memory")["calls"] and run.agent_texts() == ["Hello."]
        prompt = run.dialog.conversation.messages("instructions", pending_user="I called yesterday about my order.")
        assert any(m.role == "tool" and "Order 4572 is late" in m.content for m in prompt)  # what the LLM gets on the first turn
    finally:
        await run.abandon(threads=True)
        await store.aclose()


async def test_no_memory_unless_the_agent_asks_for_it(tmp_path: Path) -> None:
    run, store = await call_with(tmp_path, None)
    try:
        assert not any(m.role == "tool" for m in run.dialog.conversation.history)
        assert "caller_memory" not in run.kinds()
    finally:
        await run.abandon(threads=True)
        await store.aclose()
