"""llama.cpp build choices compared on this machine: tokens/s, time to first token and whether
the build runs at all (a native build can die by SIGILL on a Xeon that advertises AMX).

    .venv/bin/python -m bench.llama_build --wheel portable=~/.cache/phoneagent/wheels/<key>/llama_cpp_python-*.whl \
        --wheel native=/tmp/native/llama_cpp_python-*.whl --build-seconds native=232

Each wheel is unpacked into a scratch directory and measured in its own subprocess through our
engine (models.llama.LlamaLLM, the bundled gemma 270M), once per thread count; a crash is a
result, not an error. Build seconds come from the wheel's build.json (written by ./dev) or
--build-seconds. Prints a table and writes bench/results/llama-build-<machine>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.machine import machine_info, save_results

ROOT = Path(__file__).resolve().parents[1]


def child(threads: int, repeats: int) -> dict[str, Any]:
    """Runs inside the subprocess, with the wheel under test first on sys.path."""
    import llama_cpp

    from bench.engines import SYSTEM
    from models import catalog as cat
    from models.base import Message, drain
    from models.llama import LlamaLLM

    llm = LlamaLLM(cat.gemma_270m(), n_ctx=1024, n_threads=threads, pool_size=1, n_gpu_layers=0)
    llm.warmup()
    fresh, cached, tps = [], [], []
    prompt_tokens = 0
    for i in range(repeats):
        llm.reset_cache()
        conv = [Message("system", SYSTEM), Message("user", f"Hi, I'd like to check my balance please, account {1000 + i}.")]
        _, st = drain(llm.stream(conv, max_tokens=64, session_key="bench"))
        fresh.append(st.ttft_s * 1000)
        prompt_tokens = st.prompt_tokens
        if st.completion_tokens > 1:
            tps.append((st.completion_tokens - 1) / max(1e-6, st.total_s - st.ttft_s))
        _, st2 = drain(llm.stream([*conv, Message("assistant", "Sure."), Message("user", "Thanks.")], max_tokens=8, session_key="bench"))
        cached.append(st2.ttft_s * 1000)
    llm.close()
    return {
        "library": str(Path(llama_cpp.__file__).parent),
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
        "prompt_tokens": prompt_tokens,
        "ttft_fresh_ms_median": round(statistics.median(fresh), 1),
        "ttft_next_turn_ms_median": round(statistics.median(cached), 1),
        "decode_tokens_per_s_median": round(statistics.median(tps), 1) if tps else None,
        "decode_tokens_per_s_all": [round(x, 1) for x in tps],
    }


def measure(wheel: Path, threads: int, repeats: int, scratch: Path) -> dict[str, Any]:
    target = scratch / wheel.parent.name  # wheels of every build share one file name
    if not target.is_dir():
        with zipfile.ZipFile(wheel) as z:
            z.extractall(target)
    env = {**os.environ, "PYTHONPATH": f"{target}{os.pathsep}{ROOT}", "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "bench.llama_build", "--child", "--threads", str(threads), "--repeats", str(repeats)],
                          capture_output=True, text=True, env=env, cwd=ROOT, timeout=900)
    if proc.returncode < 0:
        sig = signal.Signals(-proc.returncode)
        return {"threads": threads, "ran": False, "died_by": sig.name, "stderr_tail": proc.stderr.strip().splitlines()[-3:],
                "system_info": _system_info(target, env)}
    if proc.returncode != 0:
        return {"threads": threads, "ran": False, "exit": proc.returncode, "stderr_tail": proc.stderr.strip().splitlines()[-5:]}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert str(target) in result["library"], f"measured the wrong llama_cpp: {result['library']}"
    return {"threads": threads, "ran": True, **result}


def _system_info(target: Path, env: dict[str, str]) -> str:
    """What the build enables, read without running a model (this much still works)."""
    code = "import llama_cpp; print(llama_cpp.llama_print_system_info().decode())"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    return proc.stdout.strip() or f"(unavailable: exit {proc.returncode})"


def build_seconds(wheel: Path, given: dict[str, float], label: str) -> float | None:
    if label in given:
        return given[label]
    try:
        return float(json.loads((wheel.parent / "build.json").read_text())["build_seconds"])
    except (OSError, KeyError, ValueError):
        return None


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wheel", action="append", default=[], help="label=path/to/llama_cpp_python-*.whl (repeatable)")
    ap.add_argument("--flags", action="append", default=[], help="label=the CMAKE_ARGS it was built with")
    ap.add_argument("--build-seconds", action="append", default=[], help="label=seconds, when the wheel has no build.json")
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.threads[0], args.repeats)))
        return 0
    wheels = dict(w.split("=", 1) for w in args.wheel)
    flags = dict(f.split("=", 1) for f in args.flags)
    given = {k: float(v) for k, v in (b.split("=", 1) for b in args.build_seconds)}
    info = machine_info()
    from models.preflight import cpu_info

    cpu = cpu_info()
    results: dict[str, Any] = {"machine": {**info, "amx_flags": [f for f in cpu.flags if f.startswith("amx")],
                                           "avx512": "avx512f" in cpu.flags}, "builds": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for label, path in wheels.items():
            wheel = Path(path).expanduser()
            runs = [measure(wheel, t, args.repeats, Path(scratch)) for t in args.threads]
            results["builds"][label] = {"wheel": wheel.name, "cmake_args": flags.get(label, ""), "build_seconds": build_seconds(wheel, given, label), "runs": runs}
    out = save_results(args.out, "llama-build", results)
    print_table(results)
    print(f"\nwritten {out}")
    return 0


def print_table(r: dict[str, Any]) -> None:
    m = r["machine"]
    print(f"llama.cpp builds on {m['cpu']} ({m['cores']} cores; AMX flags: {' '.join(m['amx_flags']) or 'none'}; avx512: {m['avx512']})")
    print(f"  {'build':<14} {'build s':>8} {'threads':>7} {'tok/s':>7} {'TTFT fresh ms':>14} {'TTFT next ms':>13}  ran")
    for label, b in r["builds"].items():
        for run in b["runs"]:
            if run["ran"]:
                print(f"  {label:<14} {b['build_seconds'] or '-':>8} {run['threads']:>7} {run['decode_tokens_per_s_median']:>7} "
                      f"{run['ttft_fresh_ms_median']:>14} {run['ttft_next_turn_ms_median']:>13}  yes")
            else:
                print(f"  {label:<14} {b['build_seconds'] or '-':>8} {run['threads']:>7} {'-':>7} {'-':>14} {'-':>13}  "
                      f"no: {run.get('died_by') or 'exit ' + str(run.get('exit'))}")


if __name__ == "__main__":
    raise SystemExit(main())
