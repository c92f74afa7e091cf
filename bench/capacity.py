"""Capacity on paper: how many boxes of which kind serve 100, 1,000 and 10,000 calls at once.

Measured here: the media path's CPU per call (the service as its own process, N callers over
AudioSocket at 16 kHz sending line noise while the agent listens: AudioSocket, VAD, pacing),
read from /proc as the service's CPU seconds per call-second. Taken from committed results (same
machine class, named in each): the work one turn costs on this CPU (STT, LLM, TTS). Assumed, and
printed as such: how often a caller takes a turn, the GPUs' published throughput. The table is
arithmetic on those numbers; where a number is assumed the table says so.

    .venv/bin/python -m bench.capacity [--calls 1,4,8] [--seconds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.machine import machine_info, save_results
from devtools.caller import CallerEmulator
from devtools.ports import free_tcp_port

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
TICK = os.sysconf("SC_CLK_TCK")

# Assumptions (not measured here), each with its source.
TURN_EVERY_S = 10.0  # a caller turn every 10 s of call: ~3 s caller speech, ~5 s agent speech, pauses
AGENT_SPEECH_S_PER_TURN = 5.0
CALLER_SPEECH_S_PER_TURN = 3.0
REPLY_TOKENS = 32  # bench.llm_server's agent turn
PUBLISHED = {
    "llm_8b_h100_tok_s": (12_500, "Llama 3.1 8B BF16 on 1x H100 80GB with vLLM, aggregate output tok/s, "
                                  "third-party figures collected at morphllm.com/vllm-benchmarks (2026)"),
    "llm_8b_a100_knee": (8, "Llama 3.1 8B on A100 40GB with vLLM: throughput x6.6 up to 8 concurrent requests at almost "
                            "no latency cost, the knee (johnmusgrave.com, vLLM 0.23)"),
    "stt_large_v3_turbo_rtf": (19.2 / 780, "faster-whisper large-v3-turbo fp16, 13 min of audio in 19.2 s on an RTX 2080 Ti, "
                                            "beam 5, one stream (SYSTRAN/faster-whisper#1030)"),
}


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime of the whole process (all threads)


def _noise(seconds: float, rate: int = 16000, level: int = 40) -> bytes:
    """Quiet line noise (about -58 dBFS): the VAD works on every frame, nothing is speech."""
    rng = random.Random(7)
    return b"".join(rng.randint(-level, level).to_bytes(2, "little", signed=True) for _ in range(int(seconds * rate)))


async def _listening(port: int, calls: int, seconds: float, pid: int, idle: float) -> dict[str, float]:
    """N callers send line noise; the service's CPU over `seconds` once every greeting is over,
    less what it burns with no call at all (`idle`, in cores)."""
    noise = _noise(1.0)
    async with contextlib.AsyncExitStack() as stack:
        callers = [await stack.enter_async_context(CallerEmulator("127.0.0.1", port, law=None)) for _ in range(calls)]
        await asyncio.gather(*(_feed(c, noise, 6.0) for c in callers))  # greetings played, then everyone listens
        t0, c0 = time.monotonic(), _cpu_s(pid)
        await asyncio.gather(*(_feed(c, noise, seconds) for c in callers))
        t1, c1 = time.monotonic(), _cpu_s(pid)
    wall = t1 - t0
    return {"calls": calls, "wall_s": round(wall, 2), "cpu_s": round(c1 - c0, 2),
            "cores_per_call": round(max((c1 - c0) / wall - idle, 0.0) / calls, 4)}


async def _feed(caller: CallerEmulator, noise: bytes, seconds: float) -> None:
    for _ in range(math.ceil(seconds)):
        await caller.say(noise)  # law=None: sent as is, paced at 20 ms frames


async def _idle(pid: int, seconds: float) -> float:
    c0 = _cpu_s(pid)
    await asyncio.sleep(seconds)
    return (_cpu_s(pid) - c0) / seconds


def _turn_costs() -> dict[str, Any]:
    """CPU seconds one turn costs on this machine class, from committed benchmark results."""
    engines = json.loads((RESULTS / "engines-cpu-2core.json").read_text())
    server = json.loads((RESULTS / "llm-server-qwen2.5-coder-0.5b-instruct-cpu-2core.json").read_text())
    stt_s = engines["stt"]["whisper-tiny.en"]["latency_ms_2_to_4_5s"]["median"] / 1000
    tts_s = AGENT_SPEECH_S_PER_TURN * engines["tts"]["rtf_median"]
    llm_turn = next(r for r in server["rows"] if r["engine"].startswith("in-process") and r["concurrency"] == 1)
    llm_s = llm_turn["turn_ms"]["p50"] / 1000  # one thread busy for the whole turn
    return {"stt_s": round(stt_s, 3), "llm_s": round(llm_s, 3), "tts_s": round(tts_s, 3),
            "sources": {"stt": f"engines-cpu-2core.json ({engines['machine']['cpu']}, whisper tiny.en, 1 thread)",
                        "tts": f"engines-cpu-2core.json (Piper rtf {engines['tts']['rtf_median']})",
                        "llm": f"llm-server-...json ({server['machine']['cpu']}, Qwen2.5 0.5B, {REPLY_TOKENS} tokens, 1 thread)"}}


def table(media_cores: float, turn: dict[str, Any]) -> list[dict[str, Any]]:
    """Boxes for 100 / 1,000 / 10,000 calls at once, CPU-only and with GPU inference servers."""
    per_turn_cpu = turn["stt_s"] + turn["llm_s"] + turn["tts_s"]
    cpu_only_cores = media_cores + per_turn_cpu / TURN_EVERY_S  # a core-share per call, all on CPU
    tts_media_cores = media_cores + turn["tts_s"] / TURN_EVERY_S  # agent hosts when STT and LLM are on GPUs
    llm_tok_s_per_call = REPLY_TOKENS / TURN_EVERY_S
    gpu_llm_calls = PUBLISHED["llm_8b_h100_tok_s"][0] / llm_tok_s_per_call / 2  # half the peak: latency headroom
    gpu_stt_calls = CALLER_SPEECH_S_PER_TURN / TURN_EVERY_S
    gpu_stt_calls = 1 / (gpu_stt_calls * PUBLISHED["stt_large_v3_turbo_rtf"][0])  # one stream, no batching
    rows = []
    for calls in (100, 1_000, 10_000):
        rows.append({
            "calls": calls,
            "cpu_only_32_core_boxes": math.ceil(calls * cpu_only_cores / 32 / 0.7),  # 70 % busy at most
            "agent_32_core_boxes_with_gpu_inference": math.ceil(calls * tts_media_cores / 32 / 0.7),
            "h100_llm_servers_8b": math.ceil(calls / gpu_llm_calls),
            "gpus_for_stt_large_v3_turbo": math.ceil(calls / gpu_stt_calls),
            "asterisk_boxes": math.ceil(calls / 500),  # assumed: ~500 G.711 calls per Asterisk box with AudioSocket
            "kamailio": 1 if calls <= 1_000 else 2,
        })
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--calls", default="1,4,8")
    ap.add_argument("--seconds", type=float, default=20.0)
    args = ap.parse_args(argv)
    levels = [int(x) for x in args.calls.split(",")]
    work = Path(tempfile.mkdtemp(prefix="phoneagent-capacity-"))
    (work / "agents").mkdir()
    # One agent that listens as long as we need (no reprompt, no goodbye inside the window).
    (work / "agents" / "listen.yaml").write_text("name: listen\ninstructions: You answer the phone for Northwind.\n"
                                                 "turn_taking: {no_input_s: 120}\n")
    port = free_tcp_port()
    log = (work / "service.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "phoneagent.cli", "serve", "--agent", "dialog", "--port", str(port),
                             "--agents", str(work / "agents"), "--db", f"sqlite:///{work}/calls.db", "--skip-preflight",
                             "--http-port", str(free_tcp_port())],
                            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 240
        while "phoneagent serving" not in (work / "service.log").read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                print((work / "service.log").read_text()[-3000:], file=sys.stderr)
                return 1
            time.sleep(0.5)
        idle = asyncio.run(_idle(proc.pid, 10.0))
        rows = [asyncio.run(_listening(port, n, args.seconds, proc.pid, idle)) for n in levels]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        log.close()
    media = max(r["cores_per_call"] for r in rows)
    turn = _turn_costs()
    plan = table(media, turn)
    print(f"service idle: {idle:.3f} cores")
    print("| listening calls | CPU s | wall s | cores per call |\n|---|---|---|---|")
    for r in rows:
        print(f"| {r['calls']} | {r['cpu_s']} | {r['wall_s']} | {r['cores_per_call']} |")
    print(f"one turn on this CPU: STT {turn['stt_s']} s, LLM {turn['llm_s']} s, TTS {turn['tts_s']} s (CPU seconds)")
    print("| calls at once | CPU-only 32-core boxes | agent boxes (32 cores) + | H100s for an 8B LLM | GPUs for STT | Asterisk | Kamailio |")
    print("|---|---|---|---|---|---|---|")
    for p in plan:
        print(f"| {p['calls']:,} | {p['cpu_only_32_core_boxes']} | {p['agent_32_core_boxes_with_gpu_inference']} | "
              f"{p['h100_llm_servers_8b']} | {p['gpus_for_stt_large_v3_turbo']} | {p['asterisk_boxes']} | {p['kamailio']} |")
    out = save_results(RESULTS, "capacity", {
        "machine": machine_info(), "idle_cores": round(idle, 4), "listening": rows, "media_cores_per_call": media,
        "turn_cpu_s": turn, "assumed": {"turn_every_s": TURN_EVERY_S, "agent_speech_s_per_turn": AGENT_SPEECH_S_PER_TURN,
                                        "caller_speech_s_per_turn": CALLER_SPEECH_S_PER_TURN, "reply_tokens": REPLY_TOKENS,
                                        "published": {k: {"value": v, "source": s} for k, (v, s) in PUBLISHED.items()},
                                        "asterisk_calls_per_box": 500, "cpu_busy_max": 0.7, "gpu_llm_headroom": 0.5},
        "plan": plan})
    print(f"saved {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
