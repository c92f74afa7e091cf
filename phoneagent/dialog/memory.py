"""Caller memory (opt-in per agent): what happened on this caller's last calls, from the call
records, given to the agent at call start, so "I called yesterday about my order" is understood
and the caller never starts from zero.

It enters the conversation as the result of a built-in lookup (like the caller-lookup tool's),
so the grounding rules hold: the agent may repeat what an earlier call's tool returned, and
nothing else. Kept short: on a CPU every prompt token costs prefill time.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from db import AsyncCallStore
from db.schema import CallView
from models.base import ToolCall
from phoneagent.dialog.call import CallContext
from phoneagent.dialog.config import CallerMemory
from phoneagent.dialog.intents import digits_only

LOOKUP = "earlier_calls"
MAX_WORDS = 24  # of each earlier call's caller words


def recall(call: CallView) -> dict[str, Any]:
    """One earlier call as the agent gets it: when, how it ended, what the caller asked (their
    first words), what the tools found, and the summary a person was given on a transfer."""
    said = " ".join(t.text for t in call.turns if t.role == "caller" and not t.text.startswith("(keypad)")).split()
    out: dict[str, Any] = {"when": call.started_at.strftime("%Y-%m-%d %H:%M"), "outcome": call.outcome or call.end_reason or "unknown",
                           "caller_said": " ".join(said[:MAX_WORDS]) + (" ..." if len(said) > MAX_WORDS else "")}
    tools = [{"tool": e.detail.get("name"), "arguments": e.detail.get("arguments"), "result": e.detail.get("result")}
             for e in call.events if e.kind == "tool_call" and e.detail and e.detail.get("ok")]
    if tools:
        out["tools"] = tools[-2:]
    if call.summary:
        out["summary"] = call.summary
    return out


async def remember(ctx: CallContext, store: AsyncCallStore | None, memory: CallerMemory | None, number: str, now: datetime) -> int:
    """Before the greeting: this caller's earlier calls into the conversation. Returns how many
    (0 when off, anonymous, new, or on any store failure: memory never costs a call)."""
    caller = digits_only(number)
    if memory is None or store is None or not caller:
        return 0
    try:
        earlier = await store.list_calls(limit=memory.calls + 1, since=now - timedelta(days=memory.within_days), caller_digits=caller)
        views = [v for c in earlier if c.id != ctx.call_id and c.ended_at is not None
                 and (v := await store.get_call(c.id)) is not None][: memory.calls]
    except Exception as exc:  # a broken database must never stop the greeting
        ctx.record.event("caller_memory_failed", error=repr(exc)[:200])
        return 0
    if not views:
        return 0
    ctx.conversation.add_tool_call(ToolCall(LOOKUP, {"caller": caller}))
    ctx.conversation.add_tool_result(LOOKUP, json.dumps({"earlier_calls": [recall(v) for v in views]}, ensure_ascii=False))
    ctx.record.event("caller_memory", calls=[v.id for v in views])
    return len(views)
