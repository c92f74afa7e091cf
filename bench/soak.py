"""Soak: many real SIP calls at once, for a long time, through the project's Asterisk into the
service as a user runs it (`phoneagent serve --ari`, a separate process, real engines), then
check that nothing leaked and latency did not drift.

    python -m bench.soak [--calls 20] [--minutes 10] [--env MALLOC_ARENA_MAX=2] [--out bench/results]

Each of `--calls` SIPp callers (G.711, the ARI path) places calls back to back until the time is
up; every call waits out the greeting, asks a question, talks over the answer (a barge-in),
types two digits (RFC 2833), says goodbye and hangs up. Every 5 s the service process's RSS,
open file descriptors and sockets in CLOSE-WAIT are sampled. At the end: every call answered
and ended, every record finalised with its turns, no ARI channel or bridge left, no CLOSE-WAIT,
RSS and FD growth after the first minute, and voice-to-voice per minute from the records.
Results: bench/results/soak-<machine>.json (tests/test_soak.py runs a short one).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp

from bench.dialog import INTERRUPTION, QUESTIONS, pct
from bench.machine import env_settings, machine_info, save_results
from db import CallStore
from devtools.serve import serving
from devtools import sipcall, testbed
from devtools.utterances import say, synthesize_set
from media.pcm import resample

GOODBYE = "Okay, thanks. That's all, goodbye."
SAMPLE_S = 5.0


def process_sample(pid: int) -> dict[str, float]:
    """RSS (MB), open file descriptors, and this process's TCP sockets in CLOSE-WAIT."""
    rss_kb = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss_kb = int(line.split()[1])
    inodes = set()
    fds = 0
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        fds += 1
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    close_wait = 0
    for table in ("tcp", "tcp6"):
        for row in Path(f"/proc/{pid}/net/{table}").read_text().splitlines()[1:]:
            cols = row.split()
            if len(cols) > 9 and cols[3] == "08" and cols[9] in inodes:  # 08: CLOSE_WAIT
                close_wait += 1
    return {"rss_mb": round(rss_kb / 1024, 1), "fds": fds, "close_wait": close_wait}


def caller_script(utts: list[Any], i: int) -> list[sipcall.Step]:
    question = resample(utts[QUESTIONS[i % len(QUESTIONS)]].pcm16k, 16000, 8000)
    interrupt = resample(utts[INTERRUPTION].pcm16k, 16000, 8000)
    goodbye = resample(utts[-1].pcm16k, 16000, 8000)
    return [sipcall.Pause(2500), sipcall.Audio(question), sipcall.Pause(2200), sipcall.Audio(interrupt), sipcall.Pause(3500),
            sipcall.Digit("4"), sipcall.Digit("2"), sipcall.Pause(2500), sipcall.Audio(goodbye), sipcall.Pause(2500)]


async def soak(calls: int, minutes: float, workdir: Path, *, llm: str = "", max_calls: int | None = None,
               env: dict[str, str] | None = None) -> dict[str, Any]:
    bed = await asyncio.to_thread(testbed.ensure)
    utts = await asyncio.to_thread(lambda: [*synthesize_set(), say(GOODBYE, voice="en-gb", speed=150)])
    db = workdir / "calls.db"
    extra = ["--db-spool", str(workdir / "spool.jsonl")] + (["--llm", llm] if llm else []) + (["--max-calls", str(max_calls)] if max_calls else [])
    samples: list[dict[str, float]] = []
    results: list[tuple[float, bool, str]] = []
    async with serving(bed, f"sqlite:///{db}", log=workdir / "service.log", extra=tuple(extra), env=env) as service:
        proc = service.proc
        t0 = time.monotonic()
        deadline = t0 + minutes * 60

        async def sampler() -> None:
            while True:
                heap = await python_heap_mb(service.http_port)
                samples.append({"t_s": round(time.monotonic() - t0, 1), **process_sample(proc.pid),
                                **({"py_heap_mb": heap} if heap is not None else {})})
                await asyncio.sleep(SAMPLE_S)

        def caller(n: int) -> None:
            i = 0
            while time.monotonic() < deadline:
                r = sipcall.place_call(bed.sip_host, bed.sip_port, "agent-ari", caller_script(utts, n + i), timeout=90)
                results.append((round(time.monotonic() - t0, 1), r.ok, r.errors[-300:] if not r.ok else ""))
                i += 1

        sampling = asyncio.create_task(sampler())
        await asyncio.gather(*(asyncio.to_thread(caller, n) for n in range(calls)))
        await asyncio.sleep(3)  # the last records and tear-downs
        sampling.cancel()
        samples.append({"t_s": round(time.monotonic() - t0, 1), **process_sample(proc.pid)})
        leftovers = await asyncio.to_thread(ari_leftovers, bed)
    exit_code = proc.returncode  # after serving's SIGTERM (-9: it had to be killed)
    return _report(calls, minutes, results, samples, leftovers, exit_code, db)


async def python_heap_mb(http_port: int) -> float | None:
    """The service's Python heap from its /metrics (only with --env PYTHONTRACEMALLOC=1)."""
    try:
        async with aiohttp.ClientSession() as http:
            async with http.get(f"http://127.0.0.1:{http_port}/metrics", timeout=aiohttp.ClientTimeout(total=2)) as r:
                text = await r.text()
    except (aiohttp.ClientError, TimeoutError):
        return None
    line = next((ln for ln in text.splitlines() if ln.startswith("phoneagent_python_heap_bytes ")), None)
    value = float(line.split()[1]) if line else 0.0
    return round(value / 2**20, 1) if value > 0 else None


def ari_leftovers(bed: testbed.AsteriskBed) -> dict[str, int]:
    channels = testbed.ari_request(bed, "GET", "/channels") or []
    bridges = testbed.ari_request(bed, "GET", "/bridges") or []
    return {"channels": len(channels), "bridges": len(bridges)}


def classify(errors: str) -> str:
    """What a SIPp call that did not end as scripted ran into: the agent hung up first (SIPp
    scripts the caller's BYE, so the agent's is "unexpected": a turned-away or finished call),
    a local port clash between the many SIPp processes of the harness, or a real failure."""
    if "nexpected" in errors and "BYE" in errors:
        return "agent_hung_up"
    if "Unable to bind" in errors and "Address already in use" in errors:
        return "harness_port_clash"
    return "failure"


def _report(calls: int, minutes: float, results: list[tuple[float, bool, str]], samples: list[dict[str, float]],
            leftovers: dict[str, int], exit_code: int, db: Path) -> dict[str, Any]:
    with CallStore(f"sqlite:///{db}") as store:
        views = [store.get_call(c.id) for c in store.list_calls(limit=100_000)]
    records = [v for v in views if v is not None]
    unfinished = [v.id for v in records if v.ended_at is None]
    no_turns = [v.id for v in records if not v.turns]
    first = min((v.started_at for v in records), default=None)
    per_minute: dict[int, list[float]] = {}
    for v in records:
        for t in v.turns:
            tm = t.timings
            if t.role == "agent" and tm.first_frame_ms is not None and tm.speech_end_ms is not None and first is not None:
                minute = int((v.started_at - first).total_seconds() // 60)
                per_minute.setdefault(minute, []).append(tm.first_frame_ms - tm.speech_end_ms)
    warm = [s for s in samples if s["t_s"] >= 60] or samples
    growth = {k: round(warm[-1][k] - warm[0][k], 1) for k in ("rss_mb", "fds", "py_heap_mb") if k in warm[0] and k in warm[-1]} if warm else {}
    return {
        "concurrent_callers": calls, "minutes": minutes, "calls_placed": len(results),
        "sip_failures": [{"t_s": t, "errors": e} for t, ok, e in results if not ok and classify(e) == "failure"],
        "agent_hung_up_first": sum(1 for _, ok, e in results if not ok and classify(e) == "agent_hung_up"),
        "harness_port_clashes": sum(1 for _, ok, e in results if not ok and classify(e) == "harness_port_clash"),
        "records": len(records), "records_unfinished": unfinished, "records_without_turns": no_turns,
        "outcomes": {o: sum(1 for v in records if v.outcome == o) for o in sorted({v.outcome or "" for v in records})},
        "ari_leftovers": leftovers, "close_wait_at_end": samples[-1]["close_wait"] if samples else None,
        "close_wait_max": max((s["close_wait"] for s in samples), default=None),
        "growth_after_first_minute": growth, "service_exit_code": exit_code,
        "v2v_ms_per_minute": {m: pct(v) for m, v in sorted(per_minute.items())},
        "v2v_ms": pct([x for v in per_minute.values() for x in v]), "samples": samples,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20, help="concurrent SIP callers")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--llm", default="", help="an LLM from the catalogue (default: the service's)")
    ap.add_argument("--max-calls", type=int, default=None, help="the service's admission limit (default: none)")
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="set in the service's environment (e.g. MALLOC_ARENA_MAX=2); named in the results file")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    try:
        env = env_settings(args.env)
    except ValueError as exc:
        ap.error(str(exc))
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        r = asyncio.run(soak(args.calls, args.minutes, Path(tmp), llm=args.llm, max_calls=args.max_calls, env=env))
    tag = "".join(f"-{k.lower()}-{v}" for k, v in sorted(env.items()))
    path = save_results(args.out, f"soak-{args.calls}calls{tag}", {"machine": info, "service_env": env, **r})
    print(f"soak: {args.calls} concurrent callers for {args.minutes:g} min on {info['cpu']} ({info['cores']} cores)")
    print(f"  calls placed {r['calls_placed']}, SIP failures {len(r['sip_failures'])} (agent hung up first: {r['agent_hung_up_first']}, "
          f"harness port clashes: {r['harness_port_clashes']}), records {r['records']} "
          f"(unfinished {len(r['records_unfinished'])}, without turns {len(r['records_without_turns'])}), outcomes {r['outcomes']}")
    print(f"  ARI left {r['ari_leftovers']}, CLOSE-WAIT at end {r['close_wait_at_end']} (max {r['close_wait_max']}), "
          f"growth after minute 1 {r['growth_after_first_minute']}, service exit {r['service_exit_code']}")
    print(f"  {'minute':>6} {'turns':>6} {'v2v p50':>8} {'p95':>6}")
    for m, p in r["v2v_ms_per_minute"].items():
        print(f"  {m:>6} {p.get('n', 0):>6} {p.get('p50') or 0:>8.0f} {p.get('p95') or 0:>6.0f}")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
