"""Who ran a benchmark: every results file records the machine and device next to the numbers."""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from pathlib import Path
from typing import Any

from models.preflight import cpu_info


def cpu_model() -> str:
    return cpu_info().model


def gpu_name() -> str | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5, cwd=Path(__file__).parent)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def machine_info() -> dict[str, Any]:
    mem_kb = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem_kb = int(line.split()[1])
    except OSError:
        pass
    gpu = gpu_name()
    return {
        "hostname": platform.node(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem_kb / 1024 / 1024, 1),
        "python": platform.python_version(),
        "os": platform.platform(),
        "device": gpu or "cpu",
        "commit": git_commit(),
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def peak_rss_mb() -> float:
    """Peak resident memory of this process (Linux reports ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def slug(info: dict[str, Any]) -> str:
    dev = str(info["device"]).lower().replace(" ", "-")
    return f"{dev}-{info['cores']}core"


def save_results(out_dir: Path, name: str, results: dict[str, Any]) -> Path:
    """Write a benchmark's results (with its machine) as `<out_dir>/<name>-<machine slug>.json`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}-{slug(results['machine'])}.json"
    path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    return path


def env_settings(pairs: list[str]) -> dict[str, str]:
    """`--env NAME=VALUE` options as a mapping; ValueError names a malformed one."""
    bad = [kv for kv in pairs if "=" not in kv or kv.startswith("=")]
    if bad:
        raise ValueError(f"--env takes NAME=VALUE, got {bad}")
    return dict(kv.split("=", 1) for kv in pairs)
