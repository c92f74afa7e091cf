"""Fault table: a fault injected into a real call, with what the caller heard and what the call
record says.

    python -m bench.faults [--only stt-raises,tts-hangs,...] [--out bench/results]

Each row is one call (or two) through the AudioSocket server and the dialog as the service wires
them, with the real silero, whisper tiny.en, the default LLM and Piper, a caller that behaves like
Asterisk on the socket (devtools/caller.py, its voice through a G.711 mu-law line) and a SQLite
call store. Engine faults are injected around the real engines (devtools/faults.py); wire faults
on the socket. "Heard" is whisper over the agent's audio as it reached the caller. Results:
bench/results/faults-<machine>.json; tests/test_faults.py runs some rows and checks them.
The rows that need Asterisk itself (the service killed, Asterisk restarted, the recordings disk
full, SIGTERM) are in bench/faults_asterisk.py and run here too.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from audiosocket.server import AudioSocketServer, CallSession
from bench.dialog import INTERRUPTION, QUESTIONS, pct, voiced_bounds
from bench.machine import machine_info, save_results, slug
from db import AsyncCallStore
from db.schema import CallView
from devtools.caller import CallerEmulator
from devtools.ear import heard_words
from devtools.faults import Fault, FaultyLLM, FaultySTT, FaultyTTS
from devtools.utterances import Utterance, synthesize_set
from models.engines import EngineConfig, Engines
from phoneagent.dialog.config import AgentConfig
from phoneagent.dialog.session import CallDialog
from phoneagent.dialog.voice import Phrases, synthesise_ahead

CONFIG = AgentConfig(greeting="Hello, how can I help?", max_reply_tokens=48)
FALLBACK_WORDS = "technical trouble"


@dataclass
class Row:
    fault: str
    how: str
    expected: str
    heard: str = ""
    outcome: str | None = None
    end_reason: str | None = None
    turns: int = 0
    events: list[str] = field(default_factory=list)
    agent_hung_up: bool = False
    seconds: float = 0.0
    checks: dict[str, bool] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


@dataclass
class Bed:
    engines: Engines
    utts: list[Utterance]
    phrases: Phrases  # the fallback synthesised ahead, as the service does at start
    tmp: Path


Script = Callable[[CallerEmulator], Awaitable[None]]


async def place(bed: Bed, engines: Engines, script: Script, *, config: AgentConfig = CONFIG,
                timeout_s: float = 60.0) -> tuple[CallerEmulator, CallView | None, float, int]:
    """One call: the server and dialog as the service wires them, `script` as the caller. The
    caller hangs up (EOF) if the agent has not after `timeout_s`. Returns the caller, the
    record, the call's length and the sessions still open 10 s after the caller left."""
    store = AsyncCallStore(f"sqlite:///{bed.tmp}/faults.db")

    async def handler(session: CallSession) -> None:
        await CallDialog(engines, config, store=store, phrases=dict(bed.phrases)).run(session)

    server = AudioSocketServer(handler, "127.0.0.1", 0)
    await server.start()
    t0 = time.monotonic()
    try:
        async with CallerEmulator("127.0.0.1", server.port) as caller:
            try:
                await asyncio.wait_for(script(caller), timeout_s)
            except TimeoutError:
                pass
        deadline = time.monotonic() + 10
        while server.sessions and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        left = len(server.sessions)
        view = await store.get_call(str(caller.call_id))
    finally:
        await server.close()
        await store.aclose()
    return caller, view, time.monotonic() - t0, left


async def ask(caller: CallerEmulator, question: Utterance, *, wait_s: float = 45.0) -> None:
    """Wait out the greeting, ask, then stay on the line (silent) until the agent hangs up."""
    await caller.wait_agent_done(quiet_s=0.5, timeout=20)
    await caller.say(question.pcm16k)
    deadline = time.monotonic() + wait_s
    while not caller.ended and time.monotonic() < deadline:
        await caller.silence(0.2)


async def fill(bed: Bed, row: Row, caller: CallerEmulator, view: CallView | None, seconds: float) -> None:
    # The agent speaks at the rate it took from the caller's frames (slin16), or at the
    # server's default (slin, 8 kHz) when no whole frame ever came: the record says which.
    rate = 8000 if view is not None and (view.media or "").startswith("slin8/") else caller.rate
    row.heard = await heard_words(bed.engines.stt, caller.agent_audio(), rate)
    row.agent_hung_up, row.seconds = caller.hung_up_by_agent, round(seconds, 1)
    if view is not None:
        row.outcome, row.end_reason, row.turns = view.outcome, view.end_reason, len(view.turns)
        row.events = [e.kind for e in view.events]


# --- rows ---------------------------------------------------------------------------------------


def _engine_fault(stage: str, mode: str, after: int, expected: str) -> Callable[[Bed], Awaitable[Row]]:
    async def run(bed: Bed) -> Row:
        fault = Fault("raise" if mode == "raises" else "hang", after=after, hang_s=15.0)
        e = bed.engines
        stt = FaultySTT(e.stt, fault) if stage == "stt" else e.stt
        llm = FaultyLLM(e.llm, fault) if stage == "llm" else e.llm
        tts = FaultyTTS(e.tts, fault) if stage == "tts" else e.tts
        engines = Engines(e.vad, stt, llm, tts, e.config, turn=e.turn)
        when = "from the first use" if after == 0 else f"after {after} good use{'s' * (after > 1)}"
        row = Row(f"{stage}-{mode}" + ("-from-start" if stage == "tts" and after == 0 else ""),
                  f"the real {stage.upper()} {mode} {when} (devtools/faults.py)", expected)
        try:
            caller, view, seconds, _ = await place(bed, engines, lambda c: ask(c, bed.utts[QUESTIONS[0]]))
        finally:
            await engines.close_schedulers()
        await fill(bed, row, caller, view, seconds)
        row.extra["injected"] = fault.injected
        row.checks = {
            "fault injected": fault.injected > 0,
            "caller heard the fallback": FALLBACK_WORDS in row.heard.lower(),
            "agent hung up": row.agent_hung_up,
            "record: outcome error, agent_hangup": (row.outcome, row.end_reason) == ("error", "agent_hangup"),
            "record: engine_error event": "engine_error" in row.events,
        }
        return row

    return run


async def audiosocket_reset(bed: Bed) -> Row:
    """The TCP connection reset (RST) half-way through the caller's question; then a new call."""
    row = Row("audiosocket-reset", "caller's socket closed with RST (SO_LINGER 0) mid-utterance, then a second call",
              "record finalised as caller_hangup; nothing left running; the next call is served")
    engines = bed.engines.sharing()
    question = bed.utts[QUESTIONS[0]].pcm16k

    async def cut(caller: CallerEmulator) -> None:
        await caller.wait_agent_done(quiet_s=0.5, timeout=20)
        await caller.say(question[: len(question) // 2])
        caller.client.reset()

    try:
        caller, view, seconds, left = await place(bed, engines, cut)
        row.extra["sessions_left"] = left
        second, view2, _, _ = await place(bed, engines, _greeting_only)
    finally:
        await engines.close_schedulers()
    await fill(bed, row, caller, view, seconds)
    second_heard = await heard_words(bed.engines.stt, second.agent_audio(), second.rate)
    row.extra["second_call_heard"] = second_heard
    row.checks = {
        "record finalised": view is not None and view.ended_at is not None,
        "record: caller_hangup": row.end_reason == "caller_hangup",
        "no session left": row.extra["sessions_left"] == 0,
        "next call served": "help" in second_heard.lower() and view2 is not None,
    }
    return row


async def _greeting_only(caller: CallerEmulator) -> None:
    await caller.wait_agent_done(quiet_s=0.5, timeout=20)


async def many_barge_ins(bed: Bed, n: int = 50) -> Row:
    """`n` times in one call the caller talks over the agent's reply; then says goodbye."""
    row = Row(f"barge-ins-{n}", f"{n} caller utterances, each started 0.4 s into an agent reply, in one call",
              "every one stops the agent at once; the call goes on; the record has every turn")
    engines = bed.engines.sharing()
    stops: list[float] = []
    attempts = [0]
    says = [bed.utts[QUESTIONS[i % len(QUESTIONS)]] for i in range(n)]

    async def talk_over(caller: CallerEmulator) -> None:
        await caller.wait_agent_done(quiet_s=0.5, timeout=20)
        t_end = time.monotonic()
        for utt in [bed.utts[INTERRUPTION], *says[1:]]:
            start = None
            deadline = time.monotonic() + 20
            while start is None and time.monotonic() < deadline and not caller.ended:
                await caller.silence(0.05)
                start = caller.first_voiced_after(t_end)
            if start is None:
                return
            await caller.silence(0.4)
            attempts[0] += 1
            t0, t_end = await caller.say(utt.pcm16k)
            onset = t0 + voiced_bounds(utt.pcm16k, 16000)[0]
            last = caller.last_voiced_before(t_end)
            if last is not None and last >= onset - 0.5:
                stops.append(max(0.0, last - onset) * 1000)
        await caller.wait_agent_done(since=t_end, quiet_s=0.5, timeout=20)
        await caller.say(bed.utts[-1].pcm16k)  # the goodbye
        await caller.wait_agent_done(since=time.monotonic(), quiet_s=0.8, timeout=20)

    try:
        caller, view, seconds, _ = await place(bed, engines, lambda c: talk_over(c), timeout_s=30.0 + 8.0 * n)
    finally:
        await engines.close_schedulers()
    await fill(bed, row, caller, view, seconds)
    barge_ins = row.events.count("barge_in")
    interrupted = sum(1 for t in (view.turns if view else []) if t.interrupted)
    row.extra.update(attempts=attempts[0], barge_in_events=barge_ins, interrupted_agent_turns=interrupted,
                     stop_after_onset_ms=pct(stops))
    row.heard = row.heard[:300] + (" ..." if len(row.heard) > 300 else "")
    row.checks = {
        f"{n} utterances over the agent": attempts[0] == n,
        "each a barge-in": barge_ins >= n,
        "agent stopped within 300 ms of onset each time": len(stops) == n and max(stops) <= 300,
        "no engine error": "engine_error" not in row.events and row.outcome != "error",
        "record finalised": view is not None and view.ended_at is not None,
    }
    return row


async def trickling_peer(bed: Bed) -> Row:
    """After its UUID the peer sends one byte every 0.3 s: never a whole frame (a stuck or
    hostile client, or a half-dead link)."""
    row = Row("trickling-peer", "after the UUID, one byte every 0.3 s: never a whole frame",
              "the call is not held open: the no-input reprompt, then goodbye and hang-up")
    engines = bed.engines.sharing()
    config = dataclasses.replace(CONFIG, no_input_s=3.0, max_reprompts=1)
    header = b"\x10\x01\x40"  # an audio frame of 320 bytes, never completed

    async def trickle(caller: CallerEmulator) -> None:
        for i in range(200):
            if caller.ended:
                return
            await caller.client.send_raw(header[i % 3:i % 3 + 1] if i < 3 else b"\x00")
            await asyncio.sleep(0.3)

    try:
        caller, view, seconds, left = await place(bed, engines, trickle, config=config, timeout_s=40.0)
    finally:
        await engines.close_schedulers()
    await fill(bed, row, caller, view, seconds)
    row.extra["sessions_left"] = left
    row.checks = {
        "agent hung up": row.agent_hung_up,
        "record: no_input, agent_hangup": (row.outcome, row.end_reason) == ("no_input", "agent_hangup"),
        "reprompt, then the no-input goodbye": "reprompt" in row.events and "no_input_hangup" in row.events,
        "no session left": left == 0,
    }
    return row


async def dtmf_flood(bed: Bed, n: int = 2000) -> Row:
    """`n` DTMF frames as fast as the socket takes them, then a question."""
    row = Row(f"dtmf-flood-{n}", f"{n} DTMF frames (0-9, #) back to back, then a spoken question",
              "the call survives; the flood is dropped and reported once (dtmf_flood), at most the entry finished "
              "before it tripped becomes a turn; the question is still answered")
    engines = bed.engines.sharing()

    async def flood(caller: CallerEmulator) -> None:
        await caller.wait_agent_done(quiet_s=0.5, timeout=20)
        for i in range(n):
            await caller.client.send_dtmf("0123456789#"[i % 11])
        t_end = time.monotonic()
        await caller.wait_agent_done(since=t_end, quiet_s=1.0, timeout=20)
        t0, t_end = await caller.say(bed.utts[QUESTIONS[1]].pcm16k)
        await caller.wait_agent_done(since=t_end, quiet_s=1.0, timeout=30)

    try:
        caller, view, seconds, left = await place(bed, engines, flood, timeout_s=90.0)
    finally:
        await engines.close_schedulers()
    await fill(bed, row, caller, view, seconds)
    entries = row.events.count("keypad")
    callers = [t.text for t in (view.turns if view else []) if t.role == "caller"]
    dropped = [e.detail for e in (view.events if view else []) if e.kind == "dtmf_flood"]
    row.extra.update(keypad_entries=entries, caller_turns=len(callers), last_caller_turn=callers[-1] if callers else None,
                     flood_events=dropped)
    row.heard = row.heard[:300] + (" ..." if len(row.heard) > 300 else "")
    row.checks = {
        "call still up after the flood": not caller.hung_up_by_agent or row.outcome != "error",
        "no engine error": "engine_error" not in row.events,
        "flood reported once": row.events.count("dtmf_flood") == 1,
        "at most one key entry": entries <= 1,
        "the spoken question became a caller turn": bool(callers) and not callers[-1].startswith("(keypad)"),
        "record finalised": view is not None and view.ended_at is not None,
    }
    return row


ROWS: dict[str, Callable[[Bed], Awaitable[Row]]] = {
    "stt-raises": _engine_fault("stt", "raises", 0, "the fallback sentence, then the agent hangs up; outcome error"),
    "stt-hangs": _engine_fault("stt", "hangs", 0, "after stt_timeout_s (6 s): the fallback, hang-up; outcome error"),
    "llm-raises": _engine_fault("llm", "raises", 0, "the fallback sentence, then the agent hangs up; outcome error"),
    "llm-hangs": _engine_fault("llm", "hangs", 0, "after first_token_timeout_s (8 s): the fallback, hang-up"),
    "tts-raises": _engine_fault("tts", "raises", 1, "greeting heard; the reply fails: the fallback (synthesised ahead)"),
    "tts-hangs": _engine_fault("tts", "hangs", 1, "greeting heard; after step_timeout_s (8 s): the fallback (ahead)"),
    "tts-raises-from-start": _engine_fault("tts", "raises", 0, "no greeting: the fallback (synthesised ahead), hang-up"),
    "audiosocket-reset": audiosocket_reset,
    "barge-ins-50": many_barge_ins,
    "trickling-peer": trickling_peer,
    "dtmf-flood-2000": dtmf_flood,
}


async def make_bed(engines: Engines, tmp: Path) -> Bed:
    return Bed(engines, synthesize_set(), await synthesise_ahead(engines.tts, CONFIG.fallback), tmp)


def all_rows() -> list[str]:
    from bench.faults_asterisk import ROWS as TELEPHONY

    return [*ROWS, *TELEPHONY]


async def run_rows(names: Sequence[str], engines: Engines) -> list[Row]:
    """In-process rows here, rows that need Asterisk in bench/faults_asterisk.py."""
    from bench.faults_asterisk import ROWS as TELEPHONY

    with tempfile.TemporaryDirectory() as tmp:
        bed = await make_bed(engines, Path(tmp))
        return [await (ROWS[name](bed) if name in ROWS else TELEPHONY[name](engines.stt, Path(tmp))) for name in names]


def merged_rows(path: Path, rows: list[Row], info: dict[str, Any]) -> list[dict[str, Any]]:
    """A run of some rows (--only) replaces those rows in the table already saved for this
    machine and keeps the others; every row says which commit and date it was measured at."""
    table: dict[str, dict[str, Any]] = {}
    if path.exists():
        old = json.loads(path.read_text())
        ran = {"commit": old["machine"].get("commit"), "date": old["machine"].get("date")}
        table = {r["fault"]: {**ran, **r} for r in old["rows"]}
    table.update({r.fault: {**dataclasses.asdict(r), "ok": r.ok, "commit": info["commit"], "date": info["date"]} for r in rows})
    order = all_rows()
    return sorted(table.values(), key=lambda r: order.index(r["fault"]) if r["fault"] in order else len(order))


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", default="", help="comma-separated rows (default: all)")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    names = [n for n in args.only.split(",") if n] or all_rows()
    unknown = [n for n in names if n not in all_rows()]
    if unknown:
        ap.error(f"unknown rows {unknown}; available: {', '.join(all_rows())}")
    if os.geteuid() != 0 and "recordings-disk-full" in names:
        names.remove("recordings-disk-full")
        print("recordings-disk-full left out: mounting a small tmpfs over Asterisk's recordings needs root")
    info = machine_info()
    config = EngineConfig()
    engines = Engines.load(config)
    rows = asyncio.run(run_rows(names, engines))
    result = {"machine": info, "device": info["device"], "engines": dataclasses.asdict(config),
              "rows": merged_rows(args.out / f"faults-{slug(info)}.json", rows, info) if args.only else
              [{**dataclasses.asdict(r), "ok": r.ok, "commit": info["commit"], "date": info["date"]} for r in rows]}
    path = save_results(args.out, "faults", result)
    print(f"fault table on {info['cpu']} ({info['cores']} cores), device {info['device']}")
    for r in rows:
        print(f"\n{'PASS' if r.ok else 'FAIL'}  {r.fault}: {r.how}")
        print(f"      expected: {r.expected}")
        print(f"      heard:    {r.heard!r}")
        print(f"      record:   outcome={r.outcome} end_reason={r.end_reason} turns={r.turns} ({r.seconds} s)"
              + (f"  {r.extra}" if r.extra else ""))
        for name, passed in r.checks.items():
            if not passed:
                print(f"      failed:   {name}")
    print(f"\nwritten {path}")
    return 0 if all(r.ok for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
