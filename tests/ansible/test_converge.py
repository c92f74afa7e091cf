"""The playbook applied for real (not --check) to a fresh Debian 12 root, from the offline bundle.

The target is a copy of a debootstrap'd bookworm (devtools/target.py) reached with the chroot
connection plugin; in `./dev test` the whole run is inside a network namespace with only
loopback, so the install is proven to need nothing but the bundle. Then: every model file
matches the bundle's checksums, the installed config passes the service's own check, the unit is
enabled with its limits, the service started as the unit starts it comes up healthy against the
real Asterisk, and a second run changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import bundle, target, testbed
from devtools.ports import free_tcp_port
from devtools.serve import Service
from tests.ansible import ANSIBLE, BIN, ansible_env

# Two converges (~1.1 GB copied, a pip install and a preflight each) run in the module's fixture:
# about 4 minutes on 2 cores, near the suite's 300 s default, which also counts fixture setup.
pytestmark = pytest.mark.timeout(1200)

UNIT = "etc/systemd/system/phoneagent.service"


@dataclass
class Converged:
    root: Path
    bundle: Path
    first: dict[str, Any]
    second: dict[str, Any]
    http_port: int
    ari_app: str


def _play(inventory: Path, extra: Path) -> dict[str, Any]:
    """One ansible-playbook run; its per-host stats (a failure fails the test with the task's message)."""
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1")
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", str(inventory), "-e", f"@{extra}", "site.yml"],
                          cwd=ANSIBLE, capture_output=True, text=True, env=env, timeout=1800, check=False)
    try:
        report = json.loads(done.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"ansible-playbook rc {done.returncode}, no JSON report:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    if done.returncode != 0:
        failed = [f"{t['task']['name']}: {h.get('msg', '')} {h.get('stderr', '')[-1500:]}"
                  for play in report["plays"] for t in play["tasks"] for h in t["hosts"].values() if h.get("failed")]
        pytest.fail(f"ansible-playbook rc {done.returncode}:\n" + "\n".join(failed) + f"\n{done.stderr[-2000:]}")
    stats: dict[str, Any] = report["stats"]["target"]
    stats["changed_tasks"] = [t["task"]["name"] for play in report["plays"] for t in play["tasks"]
                              if any(h.get("changed") for h in t["hosts"].values())]
    return stats


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory, asterisk_bed: testbed.AsteriskBed) -> Iterator[Converged]:
    if os.geteuid() != 0:
        pytest.fail("the converge test needs root (debootstrap, chroot, mounts)", pytrace=False)
    src = testbed.cache_dir() / "bundle"
    try:
        bundle.verify(src)
    except bundle.BundleError as exc:
        pytest.fail(f"{exc}. ./dev test builds it before going offline (python -m devtools bundle {src} --llama-wheel ...)", pytrace=False)
    tmp = tmp_path_factory.mktemp("converge")
    user, password = testbed.ari_credentials()
    http_port, app = free_tcp_port(), "provisioned"
    with target.fresh_target(tmp / "root") as root:
        inventory = tmp / "hosts.yml"
        inventory.write_text(json.dumps({"all": {"children": {"phoneagent_agents": {"hosts": {"target": {
            "ansible_connection": "community.general.chroot", "ansible_host": str(root)}}}}}}))
        extra = tmp / "vars.json"
        extra.write_text(json.dumps({
            "phoneagent_bundle_dir": str(src),
            "phoneagent_service_listen_port": free_tcp_port(), "phoneagent_service_http_port": http_port,
            "phoneagent_service_ari_url": asterisk_bed.ari_url, "phoneagent_service_ari_app": app,
            "phoneagent_service_ari_user": user, "phoneagent_service_ari_password": password,
            "phoneagent_service_start": False,  # no init in a chroot: the test starts the unit's command itself
        }))
        first = _play(inventory, extra)
        second = _play(inventory, extra)
        yield Converged(root, src, first, second, http_port, app)


def test_the_first_run_installs_and_a_second_run_changes_nothing(converged: Converged) -> None:
    assert converged.first["failures"] == 0 and converged.first["changed"] > 0
    assert converged.second["failures"] == 0
    assert converged.second["changed"] == 0, converged.second["changed_tasks"]


def test_every_model_file_matches_the_bundle_checksums(converged: Converged) -> None:
    manifest = json.loads((converged.bundle / "models" / "manifest.json").read_text())
    installed = converged.root / "opt/phoneagent/models"
    assert manifest["files"]
    for f in manifest["files"]:
        assert bundle.sha256(installed / f["path"]) == f["sha256"], f["path"]
    catalogue = json.loads((installed / "catalogue.json").read_text())
    assert set(catalogue) == set(manifest["models"])
    for entry in catalogue.values():
        assert (converged.root / entry["path"].lstrip("/")).exists(), entry


def test_the_installed_config_passes_the_service_check_and_secrets_stay_private(converged: Converged) -> None:
    done = subprocess.run(["chroot", str(converged.root), "/usr/sbin/runuser", "-u", "phoneagent", "--",
                           "/opt/phoneagent/venv/bin/phoneagent", "check", "--config", "/etc/phoneagent/service.yaml"],
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "agents: appointments, shipments, support" in done.stdout
    env = converged.root / "etc/phoneagent/phoneagent.env"
    assert env.stat().st_mode & 0o777 == 0o640 and env.stat().st_uid == 0
    unit = (converged.root / UNIT).read_text()
    for line in ("User=phoneagent", "Restart=on-failure", "KillSignal=SIGTERM", "LimitNOFILE=65536", "ProtectSystem=strict"):
        assert line in unit.splitlines(), line
    assert (converged.root / "etc/systemd/system/multi-user.target.wants/phoneagent.service").is_symlink()


def _unit_command(root: Path) -> tuple[list[str], dict[str, str]]:
    """ExecStart and the EnvironmentFile's variables, as systemd would use them."""
    fields = dict(line.split("=", 1) for line in (root / UNIT).read_text().splitlines() if "=" in line and not line.startswith("#"))
    env_file = root / fields["EnvironmentFile"].lstrip("/")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return fields["ExecStart"].split(), env


def test_the_installed_service_comes_up_healthy_against_asterisk_and_stops_cleanly(converged: Converged) -> None:
    argv, env = _unit_command(converged.root)
    # setpriv execs (runuser stays as a parent and dies by the signal itself): the exit status
    # seen here is the service's own, as systemd sees it.
    as_service = ["/usr/bin/setpriv", "--reuid=phoneagent", "--regid=phoneagent", "--init-groups", "--"]
    proc = subprocess.Popen(["chroot", str(converged.root), *as_service,
                             "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    service = Service(proc, converged.http_port)
    try:
        asyncio.run(service.wait_ready(240))  # the preflight loads each engine first
        state = asyncio.run(service.health())
        assert state is not None and state["ok"] and state["audiosocket"] and state["ari"] is True, state  # --ari: logged in to the real Asterisk
        proc.send_signal(signal.SIGTERM)  # as systemd's KillSignal does
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        out = proc.communicate(timeout=30)[0]
    assert "preflight ok" in out, out[-3000:]
