"""Fuzz the AudioSocket codec, coverage-guided (atheris over libFuzzer), and save the figures.

    python -m bench.fuzz_audiosocket [--runs 1000000] [--seed 1]

The target (bench/fuzz_target.py) feeds the sans-IO decoder arbitrary bytes, cut into reads
anywhere, with its limits chosen by the input, and checks its invariants (bounded buffer, final
errors, events that round-trip, a clean end after EOF). libFuzzer stops at the first crash, a
hang (-timeout, seconds per input) or memory past the address-space limit; the crashing input is saved
under the output directory. Results: bench/results/fuzz-audiosocket-<machine>.json.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.machine import machine_info, save_results

TARGET = Path(__file__).with_name("fuzz_target.py")


def fuzz(runs: int, seed: int, workdir: Path, *, max_len: int = 4096, timeout_s: int = 5, memory_limit_mb: int = 2048) -> dict[str, Any]:
    """One libFuzzer run in a subprocess; its figures, parsed from what libFuzzer prints.

    Memory is bounded by an address-space limit on the subprocess (a blow-up is a MemoryError,
    which libFuzzer reports as a crash), not by libFuzzer's -rss_limit_mb: that reads the peak
    RSS, which Linux carries over exec from the parent, so a big parent (a test run with the
    models loaded) made every run look out of memory."""
    corpus = workdir / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, str(TARGET), f"-runs={runs}", f"-seed={seed}", f"-max_len={max_len}", f"-timeout={timeout_s}",
            "-rss_limit_mb=0", f"-artifact_prefix={workdir}/", "-print_final_stats=1", str(corpus)]
    limit = memory_limit_mb * 1024 * 1024

    def bounded() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    t0 = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1], preexec_fn=bounded)
    seconds = time.monotonic() - t0
    log = done.stderr
    ran = re.search(r"Done (\d+) runs in (\d+) second", log)
    cov = re.findall(r"cov: (\d+) ft: (\d+)", log)
    artifacts = sorted(str(p) for p in workdir.glob("crash-*")) + sorted(str(p) for p in workdir.glob("timeout-*")) \
        + sorted(str(p) for p in workdir.glob("oom-*"))
    return {
        "runs_requested": runs, "runs_done": int(ran.group(1)) if ran else None, "seconds": round(seconds, 1),
        "exit_code": done.returncode, "edges_covered": int(cov[-1][0]) if cov else None, "features": int(cov[-1][1]) if cov else None,
        "corpus_files": len(list(corpus.iterdir())), "artifacts": artifacts, "seed": seed, "max_len": max_len,
        "timeout_s_per_input": timeout_s, "address_space_limit_mb": memory_limit_mb,
        "log_tail": log.strip().splitlines()[-12:],
    }


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=1_000_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = ap.parse_args(argv)
    info = machine_info()
    with tempfile.TemporaryDirectory(prefix="fuzz-audiosocket-") as tmp:
        r = fuzz(args.runs, args.seed, Path(tmp))
    ok = r["exit_code"] == 0 and r["runs_done"] is not None and not r["artifacts"]
    path = save_results(args.out, "fuzz-audiosocket", {"machine": info, "target": "audiosocket.protocol.AudioSocketDecoder",
                                                         "fuzzer": "atheris (libFuzzer), coverage-guided", "ok": ok, **r})
    print(f"AudioSocket codec fuzzing on {info['cpu']} ({info['cores']} cores)")
    print(f"  {'runs':>10} {'seconds':>8} {'edges':>6} {'features':>8} {'crashes/hangs/ooms':>19}")
    print(f"  {r['runs_done'] or 0:>10} {r['seconds']:>8} {r['edges_covered'] or 0:>6} {r['features'] or 0:>8} {len(r['artifacts']):>19}")
    print(f"\nwritten {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
