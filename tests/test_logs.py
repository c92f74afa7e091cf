"""JSON log lines carry the call id of the call they were logged for, in the call's own tasks
and in the tasks it creates, and never leak into another call's lines."""

from __future__ import annotations

import asyncio
import io
import json
import logging

from phoneagent.logs import CALL_ID, JsonFormatter


async def test_each_calls_lines_carry_its_id() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("phoneagent.test_logs")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    async def call(call_id: str) -> None:  # what the AudioSocket server does once it has the call's UUID
        CALL_ID.set(call_id)
        log.info("greeting for %s", call_id)
        await asyncio.create_task(child())  # a task the call starts (reply, filler, webhook)

    async def child() -> None:
        await asyncio.sleep(0)
        log.warning("tool failed")

    try:
        await asyncio.gather(call("aaaa"), call("bbbb"))
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("outside any call")
    finally:
        log.removeHandler(handler)
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    by_call: dict[str, list[str]] = {}
    for line in lines[:-1]:
        by_call.setdefault(line["call_id"], []).append(line["msg"])
    assert by_call == {"aaaa": ["greeting for aaaa", "tool failed"], "bbbb": ["greeting for bbbb", "tool failed"]}
    assert "call_id" not in lines[-1] and "ValueError: boom" in lines[-1]["exc"] and lines[-1]["level"] == "ERROR"
    assert set(lines[0]) == {"ts", "level", "logger", "msg", "call_id"}
