"""The service role's GPU check: a CUDA config that cannot work stops the play, with the reason.

Today's bundle carries the portable CPU build of llama-cpp-python, so `device: cuda` must be
refused before anything is installed: on a host without an NVIDIA driver for that first, on one
with a driver for the CPU build. `device: auto` passes and says what the engines will run on.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from devtools import testbed
from tests.ansible import ANSIBLE, BIN, ansible_env


def _check(tmp_path: Path, device: str) -> subprocess.CompletedProcess[str]:
    """The role's gpu.yml alone, against this machine (read-only tasks: a stat and nvidia-smi)."""
    playbook = tmp_path / "gpu.yml"
    playbook.write_text(json.dumps([{"name": "Check the GPU", "hosts": "localhost", "gather_facts": False, "tasks": [
        {"name": "Run the service role's GPU check", "ansible.builtin.include_role": {"name": "phoneagent_service", "tasks_from": "gpu"}}]}]))
    extra = {"phoneagent_bundle_dir": str(testbed.cache_dir() / "bundle"), "phoneagent_service_engines": {"device": device}}
    return subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "-c", "local", "-e", json.dumps(extra), str(playbook)],
                          cwd=ANSIBLE, capture_output=True, text=True, timeout=300, check=False,
                          env=ansible_env(ANSIBLE_ROLES_PATH=str(ANSIBLE / "roles"), ANSIBLE_NOCOLOR="1"))


def test_cuda_with_the_cpu_bundle_is_refused_with_the_reason(tmp_path: Path) -> None:
    done = _check(tmp_path, "cuda")
    assert done.returncode != 0, done.stdout
    reason = "no NVIDIA driver loaded" if not os.path.exists("/proc/driver/nvidia/version") else "portable\nCPU build"
    assert " ".join(reason.split()) in " ".join(done.stdout.split()), done.stdout[-3000:]


def test_auto_passes_and_says_where_the_engines_run(tmp_path: Path) -> None:
    done = _check(tmp_path, "auto")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    assert "the bundle's llama-cpp-python is a CPU build" in " ".join(done.stdout.split())
    if not os.path.exists("/proc/driver/nvidia/version"):
        assert "the engines run on the CPU" in done.stdout
