"""Voice-to-voice latency through Kamailio: SIP caller -> Kamailio -> Asterisk -> agent host, with
the LLM in the agent's process or on an inference server on the same box (same model, same
threads), at 1 and at N calls at once.

    .venv/bin/python -m bench.cluster [--calls 1,8] [--rounds 2]

Each host is a network namespace (devtools.cluster): Kamailio, one Asterisk, one agent host
(`phoneagent serve --ari`, the agent-pool dialplan), and for the server cases an inference-server
host: llama-cpp-python's OpenAI-compatible server (one request at a time) or llama.cpp's
llama-server with one slot per call and continuous batching (built from the pinned source,
devtools.llm_server.llama_server_binary). Each caller waits out the greeting and asks one question; Asterisk's MixMonitor
records both directions of the caller's leg, and V2V is the end of the question in what the
caller said to the first agent speech in what the caller heard (bench.dialog_asterisk.analyse).
All of it shares this machine's cores, so N calls also means N callers' worth of SIP and media.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from bench.dialog import QUESTIONS, pct, voiced_bounds
from bench.dialog_asterisk import analyse, read_wav
from bench.machine import machine_info, save_results
from devtools import cluster, kamailio, llm_server, testbed
from devtools.sipcall import Audio, Pause, Step
from devtools.utterances import synthesize_set
from media.pcm import resample
from models import catalog as cat

GREETING_WAIT_MS = 4500
LLM = "qwen2.5-coder-0.5b-instruct"
LLM_THREADS = 2  # in-process: a pool of 2 one-thread instances; servers: 2 threads
# in-process: llama.cpp instances in the service; llama_cpp.server: llama-cpp-python's server
# (one request at a time); llama-server: llama.cpp's, continuous batching over one slot per call.
ENGINES = ("in-process", "llama_cpp.server", "llama-server")


def _call(bed: cluster.Bed, question: bytes) -> float | str:
    """The call's V2V in ms, or why there is none: "sip" (the call failed) or "no answer" (no agent
    speech after the question within the 7 s the caller waits)."""
    rec = f"bench-{uuid.uuid4().hex[:10]}"
    q_len_ms = int(voiced_bounds(question, 8000)[1] * 1000) + 100
    steps: list[Step] = [Pause(GREETING_WAIT_MS), Audio(question[: q_len_ms * 16]), Pause(7000)]
    if not bed.call("agent-pool-rec", steps=steps, record_as=rec).ok:
        return "sip"
    a = next(iter(bed.asterisks.values()))
    paths = {k: a.host_path(f"{testbed.RECORDING_DIR}/{rec}-{k}.wav") for k in ("said", "heard", "both")}
    deadline = time.monotonic() + 10
    while not (paths["said"].exists() and paths["heard"].exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    try:
        v2v, _ = analyse(read_wav(paths["said"]), read_wav(paths["heard"]))
    finally:
        for p in paths.values():
            p.unlink(missing_ok=True)
    return "no answer" if v2v is None else v2v


def _level(bed: cluster.Bed, calls: int, rounds: int, questions: list[bytes]) -> dict[str, Any]:
    v2v: list[float] = []
    missing = {"sip": 0, "no answer": 0}
    with ThreadPoolExecutor(calls) as pool:
        for r in range(rounds):
            for got in pool.map(lambda i: _call(bed, questions[(r * calls + i) % len(questions)]), range(calls)):
                if isinstance(got, str):
                    missing[got] += 1
                else:
                    v2v.append(got)
    return {"calls": calls, "v2v_ms": pct(v2v), "sip_failed": missing["sip"], "no_answer_in_7s": missing["no answer"],
            "samples": [round(x) for x in v2v]}


def run(levels: list[int], rounds: int, work: Path) -> list[dict[str, Any]]:
    utts = synthesize_set()
    questions = [resample(utts[q].pcm16k, 16000, 8000) for q in QUESTIONS]
    model = cat.get(cat.load_catalog(), LLM)
    rows: list[dict[str, Any]] = []
    with cluster.network() as lan:
        for name, octet in (("kamailio", 2), ("asterisk-a", 11), ("llm", 31)):
            lan.add(name, octet)
        bed = cluster.Bed(lan, work)
        try:
            a = bed.start("a")
            with kamailio.running("bench", bed.proxy, [a.sip_host], netns_argv=lan.hosts["kamailio"].argv(),
                                  log_path=work / "kamailio.log") as k:
                k.wait_for({bed.uri("a"): True}, timeout=15)
                for octet, engine in enumerate(ENGINES, 21):
                    serving = contextlib.nullcontext(None) if engine == "in-process" else \
                        llm_server.serving(model.path, work / f"{engine}.log", host=lan.addresses["llm"], port=8080,
                                           argv_prefix=lan.hosts["llm"].argv(), threads=LLM_THREADS,
                                           parallel=max(levels) if engine == "llama-server" else 0)
                    with serving as server:
                        engines = {"llm": LLM, "llm_pool": LLM_THREADS} if server is None else \
                            {"llm_url": server.url, "llm": server.model}
                        host = cluster.AgentHost(bed, f"agent-{octet}", octet, f"sqlite:///{work}/{engine}.db",
                                                 max_calls=max(levels), engines=engines)
                        try:
                            host.start()
                            host.wait_ready()
                            for calls in levels:
                                row = {"engine": engine, **_level(bed, calls, rounds, questions)}
                                print(json.dumps({k: v for k, v in row.items() if k != "samples"}), flush=True)
                                rows.append(row)
                        finally:
                            host.stop()
        finally:
            bed.close()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="1,8")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.calls.split(",")]
    work = Path(tempfile.mkdtemp(prefix="phoneagent-bench-cluster-"))
    rows = run(levels, args.rounds, work)
    print("| LLM | calls at once | V2V p50 / p95 (ms) | calls failed / no answer in 7 s |\n|---|---|---|---|")
    for r in rows:
        v = r["v2v_ms"]
        print(f"| {r['engine']} | {r['calls']} | {v['p50']} / {v['p95']} | {r['sip_failed']} / {r['no_answer_in_7s']} |")
    out = save_results(Path(__file__).parent / "results", "cluster-v2v", {
        "machine": machine_info(), "llm": LLM, "llm_threads": LLM_THREADS, "rounds": args.rounds, "rows": rows,
        "path": "SIPp -> Kamailio -> Asterisk (agent-pool, StasisBroadcast) -> agent host (ARI, AudioSocket)"})
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
