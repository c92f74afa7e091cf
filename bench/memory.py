"""Where does a long-running service's memory go? Each engine alone, many turns, RSS sampled.

    python -m bench.memory [--turns 300] [--env MALLOC_ARENA_MAX=2 ...] [--out bench/results]

The soak (bench/soak.py) saw the service's RSS grow by ~200 MB over ten minutes of calls. This
separates the suspects: in a fresh child process per engine (and per allocator setting) it runs
`--turns` real turns of that engine alone, with varied inputs as calls bring them (STT on the
bundled utterances at different lengths, Piper on sentences of different lengths, the LLM on a
conversation that grows and restarts like calls do, the VAD on a stream per call), and samples
RSS every 10 turns. Growth is reported after the first 20% of turns (warm-up: arenas and caches
reach their working size), with the Python heap (tracemalloc) beside it so a leak in our own
objects shows apart from native memory. Results: bench/results/memory-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.machine import env_settings, machine_info, save_results
from bench.soak import process_sample

ENGINES = ("vad", "stt", "tts", "llm")
SENTENCES = (
    "Sure.", "Let me check that for you.", "Your order has shipped and should arrive on Friday, December the fourth.",
    "I'm sorry, I can only help with orders and deliveries on this line. Is there anything about an order I can check?",
    "Order four five seven two, a filing cabinet, is delayed because of a storm at the depot. The new delivery date is "
    "Monday, December the seventh, and we will send you a text message on the morning of the delivery.",
)


def _turns(engine: str) -> Callable[[int], None]:
    """One turn of `engine` per call, its inputs varied by the turn number."""
    from devtools.utterances import synthesize_set
    from models.base import CancelToken, Message
    from models.engines import EngineConfig, Engines

    engines = Engines.load(EngineConfig(turn=""))
    utts = [u.pcm16k for u in synthesize_set()]
    if engine == "vad":
        def vad(i: int) -> None:
            stream = engines.vad.stream(16000)
            pcm = utts[i % len(utts)]
            for at in range(0, len(pcm) - 1024, 1024):
                stream.process(pcm[at:at + 1024])
        return vad
    if engine == "stt":
        def stt(i: int) -> None:
            engines.stt.transcribe(utts[i % len(utts)][: (i % 7 + 3) * 16000], 16000)  # 3-9 s of speech
        return stt
    if engine == "tts":
        def tts(i: int) -> None:
            for _ in engines.tts.synthesize(SENTENCES[i % len(SENTENCES)] + f" Reference {i}.", 16000):
                pass
        return tts

    history: list[Message] = []

    def llm(i: int) -> None:
        nonlocal history
        if i % 8 == 0:
            history = []  # a new call
        history.append(Message("user", f"Question {i}: what is the status of order {1000 + i}?"))
        text = "".join(t.text for t in engines.llm.stream([Message("system", "You answer briefly."), *history],
                                                          max_tokens=24, cancel=CancelToken(), session_key=f"call-{i // 8}"))
        history.append(Message("assistant", text or "Okay."))
    return llm


def child(engine: str, turns: int) -> dict[str, Any]:
    """Runs in its own process (a clean heap): `turns` turns, RSS every 10."""
    run = _turns(engine)
    tracemalloc.start()
    samples: list[dict[str, float]] = []
    t0 = time.monotonic()
    for i in range(turns):
        run(i)
        if i % 10 == 9:
            samples.append({"turn": i + 1, "rss_mb": process_sample(os.getpid())["rss_mb"],
                            "py_heap_mb": round(tracemalloc.get_traced_memory()[0] / 2**20, 2)})
    warm = samples[max(0, len(samples) // 5 - 1):]
    growth = {k: round(warm[-1][k] - warm[0][k], 1) for k in ("rss_mb", "py_heap_mb")} if len(warm) > 1 else {}
    return {"engine": engine, "turns": turns, "seconds": round(time.monotonic() - t0, 1),
            "growth_after_warmup": growth, "samples": samples}


def run(engine: str, turns: int, env: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, "-m", "bench.memory", "--child", engine, "--turns", str(turns)],
                         env={**os.environ, **env}, capture_output=True, text=True, check=False, timeout=3600)
    if out.returncode != 0:
        return {"engine": engine, "error": out.stderr[-2000:]}
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--turns", type=int, default=300)
    ap.add_argument("--engines", default=",".join(ENGINES))
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="an allocator setting to compare with the default (each --env is one more column)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args.turns)))
        return 0
    try:
        settings: list[dict[str, str]] = [{}, *({k: v} for k, v in env_settings(args.env).items())]
    except ValueError as exc:
        ap.error(str(exc))
    info = machine_info()
    rows = []
    for env in settings:
        for engine in args.engines.split(","):
            r = run(engine, args.turns, env)
            rows.append({"env": env, **r})
            g = r.get("growth_after_warmup", {})
            print(f"  {engine:4} {json.dumps(env):28} rss +{g.get('rss_mb', '?')} MB, python heap +{g.get('py_heap_mb', '?')} MB"
                  f" over {args.turns} turns ({r.get('seconds', '?')} s)" + (f"  ERROR {r['error'][-300:]}" if "error" in r else ""))
    path = save_results(args.out, "memory", {"machine": info, "turns": args.turns, "rows": rows})
    print(f"\nwritten {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
