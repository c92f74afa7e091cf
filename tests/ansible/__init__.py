"""Tests of ansible/: the tools run from this venv, with the project's ansible.cfg."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ANSIBLE = Path(__file__).resolve().parents[2] / "ansible"
BIN = Path(sys.executable).parent


def ansible_env(**extra: str) -> dict[str, str]:
    return {**os.environ, "PATH": f"{BIN}:{os.environ.get('PATH', '')}", "ANSIBLE_CONFIG": str(ANSIBLE / "ansible.cfg"), **extra}


def play(inventory: Path, extra: Path, playbook: Path | str = "site.yml", timeout: float = 1800) -> dict[str, Any]:
    """One ansible-playbook run; host `target`'s stats plus `changed_tasks` (any host's) and `hosts` (every host's stats);
    a failure fails the test with the task's message."""
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1", ANSIBLE_ROLES_PATH=str(ANSIBLE / "roles"))
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{extra}", str(playbook)],
                          cwd=ANSIBLE, capture_output=True, text=True, env=env, timeout=timeout, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook rc {done.returncode}, no JSON report:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    if done.returncode != 0:
        failed = [f"{t['task']['name']}: {h.get('msg', '')} {h.get('stdout', '')[-1500:]} {h.get('stderr', '')[-1500:]}"
                  + "".join(f"\n  {r.get('msg', '')}" for r in h.get("results", []) if r.get("failed"))  # a loop's failed items
                  for play in report["plays"] for t in play["tasks"] for h in t["hosts"].values() if h.get("failed")]
        pytest.fail(f"ansible-playbook rc {done.returncode}:\n" + "\n".join(failed) + f"\n{done.stderr[-2000:]}")
    stats: dict[str, Any] = dict(report["stats"].get("target", {}))
    stats["hosts"] = report["stats"]  # every host's, by inventory name
    stats["changed_tasks"] = [t["task"]["name"] for play in report["plays"] for t in play["tasks"]
                              if any(h.get("changed") for h in t["hosts"].values())]
    return stats


def bundle_dir() -> Path:
    """The offline bundle ./dev test builds (checked against its SHA256SUMS), or the test fails saying so."""
    from devtools import bundle, testbed

    src = testbed.cache_dir() / "bundle"
    try:
        bundle.verify(src)
    except bundle.BundleError as exc:
        pytest.fail(f"{exc}. ./dev test builds it before going offline (python -m devtools bundle {src} --llama-wheel ...)",
                    pytrace=False)
    return src


def role_alone(tmp: Path, root: Path, role: str) -> tuple[Path, Path]:
    """An inventory whose one host `target` is `root` (chroot connection) and a playbook applying
    `role` alone to it: (inventory, playbook)."""
    inventory, playbook = tmp / "hosts.yml", tmp / f"{role}.yml"
    inventory.write_text(json.dumps({"all": {"hosts": {"target": {
        "ansible_connection": "community.general.chroot", "ansible_host": str(root)}}}}))
    playbook.write_text(json.dumps([{"name": f"Apply {role} alone", "hosts": "target", "gather_facts": False, "roles": [role]}]))
    return inventory, playbook


def unit_fields(root: Path, unit: str) -> dict[str, str]:
    """A systemd unit file installed under `root`, as key=value (one value per key)."""
    return dict(line.split("=", 1) for line in (root / unit).read_text().splitlines() if "=" in line and not line.startswith("#"))
