"""The LLM in-process (llama.cpp instances in the service) versus on an OpenAI-compatible
inference server on the same box, same model, same threads: time to first token and to the end
of a typical agent turn, at 1 and more concurrent requests. Prints a table, writes JSON with the
machine.

    .venv/bin/python -m bench.llm_server [--llm qwen2.5-coder-0.5b-instruct] [--concurrency 1,2] [--repeats 6]

The server is llama-cpp-python's (`python -m llama_cpp.server`), which runs one request at a
time: what this measures is the remote path's own cost (HTTP, SSE, the server's template), not
continuous batching (llama.cpp's llama-server with --parallel, or vLLM, batch; not bundled here).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.engines import SYSTEM
from bench.machine import machine_info, save_results
from devtools import llm_server
from models import catalog as cat
from models.base import LLM, Message, drain
from models.llama import LlamaLLM
from models.openai_llm import OpenAICompatLLM

QUESTIONS = ("What time do you close on Saturday?", "Can I pay my bill by card over the phone?",
             "My meter reading looks wrong, what should I do?", "Do you have an office in town?")
MAX_TOKENS = 32


def _turn(llm: LLM, i: int) -> tuple[float, float, int]:
    """One agent turn: (time to first token, total, tokens)."""
    msgs = [Message("system", SYSTEM), Message("user", QUESTIONS[i % len(QUESTIONS)])]
    t0 = time.perf_counter()
    tokens, stats = drain(llm.stream(msgs, max_tokens=MAX_TOKENS, session_key=f"call-{i % 4}"))
    return stats.ttft_s or time.perf_counter() - t0, time.perf_counter() - t0, len(tokens)


def ms(xs: list[float]) -> dict[str, int]:
    return {"p50": round(statistics.median(xs) * 1000), "p95": round(sorted(xs)[int(0.95 * (len(xs) - 1))] * 1000)}


def measure(llm: LLM, concurrency: int, repeats: int) -> dict[str, Any]:
    _turn(llm, 0)  # warm: the system prompt in the cache, as in a running service
    ttft, total, tokens = [], [], 0
    with ThreadPoolExecutor(concurrency) as pool:
        for r in range(repeats):
            for t, tt, n in pool.map(lambda k: _turn(llm, r * concurrency + k), range(concurrency)):
                ttft.append(t)
                total.append(tt)
                tokens += n
    return {"concurrency": concurrency, "turns": len(ttft), "ttft_ms": ms(ttft), "turn_ms": ms(total),
            "tokens_per_turn": round(tokens / len(ttft), 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--llm", default="qwen2.5-coder-0.5b-instruct")
    ap.add_argument("--concurrency", default="1,2")
    ap.add_argument("--repeats", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    path = cat.get(cat.load_catalog(), args.llm).path
    levels = [int(c) for c in args.concurrency.split(",")]
    rows: list[dict[str, Any]] = []
    for c in levels:
        local = LlamaLLM(path, n_ctx=2048, n_threads=args.threads, pool_size=c)
        local.load()
        rows.append({"engine": f"in-process (pool {c})", **measure(local, c, args.repeats)})
        local.close()
    with tempfile.TemporaryDirectory() as tmp, llm_server.serving(path, Path(tmp) / "server.log", threads=args.threads) as srv:
        remote = OpenAICompatLLM(srv.url, srv.model)
        rows += [{"engine": "llama_cpp.server", **measure(remote, c, args.repeats)} for c in levels]
    print(f"{'engine':24} {'calls':>5} {'TTFT p50':>9} {'p95':>6} {'turn p50':>9} {'p95':>6} {'tok/turn':>8}")
    for r in rows:
        print(f"{r['engine']:24} {r['concurrency']:>5} {r['ttft_ms']['p50']:>9} {r['ttft_ms']['p95']:>6} "
              f"{r['turn_ms']['p50']:>9} {r['turn_ms']['p95']:>6} {r['tokens_per_turn']:>8}")
    out = save_results(args.out, f"llm-server-{args.llm}", {
        "machine": machine_info(), "llm": args.llm, "threads": args.threads, "max_tokens": MAX_TOKENS,
        "server_command": "python -m llama_cpp.server --model <gguf> --model_alias qwen --n_ctx 2048 "
                          f"--n_threads {args.threads} --interrupt_requests False",
        "rows": rows})
    print(f"saved {out}")


if __name__ == "__main__":
    main()
