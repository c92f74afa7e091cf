"""Surge: more callers at once than the box can serve, with and without admission control.

    python -m bench.surge [--offered 2,4,8] [--max-calls 3] [--minutes 2] [--out bench/results]

For each offered load (that many SIPp callers placing calls back to back through the bundled
Asterisk, the soak's caller script: question, barge-in, digits, goodbye) the service runs as
users run it, once with `--max-calls` and once without. Reported per run: calls offered, served
(answered by the agent and ended by the caller), turned away with the busy message, failed; the
voice-to-voice latency of the served calls' answers (p50/p95), and engine errors (a caller who
heard the "technical trouble" fallback). The caller script does not wait: 2.2 s after the
question it talks again, so `answers_per_served_call` says how many answers a served caller
actually heard. The capacity figure is the largest offered load whose served calls kept p95
V2V under 2 s with no engine error, without admission control.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.machine import machine_info, save_results
from bench.soak import soak
from models.engines import EngineConfig

TARGET_P95_MS = 2000.0


def summarise(offered: int, max_calls: int | None, r: dict[str, Any]) -> dict[str, Any]:
    outcomes = r["outcomes"]
    served = sum(n for o, n in outcomes.items() if o not in ("busy", "error"))
    return {
        "offered_at_once": offered, "max_calls": max_calls, "calls_placed": r["calls_placed"],
        "served": served,
        # Agent answers that started playing before the caller went on with the script (2.2 s
        # after the question): a slow box "serves" a call whose questions are never answered.
        "answers_heard": r["v2v_ms"]["n"], "answers_per_served_call": round(r["v2v_ms"]["n"] / served, 2) if served else None,
        "busy": outcomes.get("busy", 0), "engine_errors": outcomes.get("error", 0),
        "sip_failures": len(r["sip_failures"]), "records_unfinished": len(r["records_unfinished"]),
        "v2v_ms": r["v2v_ms"], "outcomes": outcomes,
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--offered", default="2,4,8", help="comma-separated numbers of callers at once")
    ap.add_argument("--max-calls", type=int, default=3, help="the admission limit compared with none")
    ap.add_argument("--minutes", type=float, default=2.0, help="per run")
    ap.add_argument("--llm", default="")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    runs = []
    for offered in (int(n) for n in args.offered.split(",")):
        for limit in (None, args.max_calls):
            with tempfile.TemporaryDirectory(prefix="surge-") as tmp:
                r = asyncio.run(soak(offered, args.minutes, Path(tmp), llm=args.llm, max_calls=limit))
            runs.append(summarise(offered, limit, r))
            print(f"  offered {offered} max_calls {limit}: {runs[-1]}", flush=True)
    ok = [x["offered_at_once"] for x in runs if x["max_calls"] is None and not x["engine_errors"]
          and (x["v2v_ms"]["p95"] or 1e9) <= TARGET_P95_MS]
    result = {"machine": info, "llm": args.llm or EngineConfig().llm, "minutes_per_run": args.minutes, "runs": runs,
              "capacity_calls_at_once": max(ok, default=0), "capacity_rule": f"served p95 V2V <= {TARGET_P95_MS:g} ms, no engine error"}
    path = save_results(args.out, "surge", result)
    print(f"surge on {info['cpu']} ({info['cores']} cores), {args.minutes:g} min per run")
    print(f"  {'offered':>7} {'max_calls':>9} {'placed':>6} {'served':>6} {'busy':>5} {'errors':>6} {'answers/call':>12} {'v2v p50':>8} {'p95':>6}")
    for x in runs:
        v = x["v2v_ms"]
        print(f"  {x['offered_at_once']:>7} {x['max_calls'] or '-':>9} {x['calls_placed']:>6} {x['served']:>6} {x['busy']:>5} "
              f"{x['engine_errors']:>6} {x['answers_per_served_call'] or 0:>12} {v['p50'] or 0:>8.0f} {v['p95'] or 0:>6.0f}")
    print(f"  capacity: {result['capacity_calls_at_once']} calls at once ({result['capacity_rule']})")
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
