"""The playbook applied to a fresh Debian 12 or Ubuntu 24.04 host that boots systemd, as on a real server.

The chroot converge (test_converge.py) cannot run an init, so it starts the units' command lines
itself. Here the fresh root runs its own systemd (systemd-nspawn, devtools/booted.py; Debian 12's
systemd 252, Ubuntu 24.04's 255) in a network namespace of its own, and ansible reaches it like a
remote host (community.docker's nsenter connection plugin): the play starts and enables the units
itself, with the role defaults (only the ARI password and a SIP peer are set), from the offline
bundle. Then, with systemd doing it: every unit is active with its sandboxing, the firewall's table
is loaded, a SIP call is answered by the example agent, a killed service comes back
(Restart=on-failure), a stop is graceful, a second run changes nothing, and after a power-off the
box boots into answering calls with no play.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import booted, sipcall, target, testbed
from devtools.serve import Service
from tests.ansible import play
from tests.ansible.provisioned import finished_calls, workspace

pytestmark = pytest.mark.timeout(1500)

HTTP_PORT, SIP_PORT = 9100, 5060  # the roles' defaults: the box has its own network namespace
UNITS = ("phoneagent.service", "phoneagent-asterisk.service", "phoneagent-firewall.service", "phoneagent-recordings-retention.timer")
CALLS_DB = "var/lib/phoneagent/calls.db"


@dataclass
class Box:
    tmp: Path
    first: dict[str, Any]
    second: dict[str, Any]
    host: booted.BootedHost


def nsenter_inventory(tmp: Path, leader: int) -> Path:
    inventory = tmp / "hosts.yml"
    # The play becomes root (sudo on a real server); the connection is root already and a fresh
    # Debian has no sudo: su, root to root, asks for no password.
    host = {"target": {"ansible_connection": "community.docker.nsenter", "ansible_nsenter_pid": leader,
                       "ansible_become_method": "ansible.builtin.su"}}
    inventory.write_text(json.dumps({"all": {"children": {g: {"hosts": host} for g in ("phoneagent_asterisk", "phoneagent_agents")}}}))
    return inventory


@pytest.fixture(scope="module", params=["bookworm", "noble"])
def box(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Box]:
    if shutil.which("systemd-nspawn") is None:
        pytest.fail("systemd-nspawn is missing: ./dev installs systemd-container", pytrace=False)
    suite = str(request.param)
    src, tmp = workspace(tmp_path_factory, f"systemd-{suite}")
    if suite not in json.loads((src / "bundle.json").read_text())["platforms"]:
        pytest.fail(f"{src} has no {suite} part: ./dev test builds it with --releases bookworm,noble", pytrace=False)
    root = target.copy_base(tmp / "root", suite)
    extra = tmp / "vars.json"
    extra.write_text(json.dumps({
        "phoneagent_bundle_dir": str(src),
        "phoneagent_service_ari_password": "systemd-" + os.urandom(12).hex(),
        "phoneagent_asterisk_sip_peers": [{"name": "pbx", "match": "127.0.0.1", "agent": "support", "path": "ari"}],
    }))
    try:
        with booted.booted(root, tmp / "console.log") as host:
            inventory = nsenter_inventory(tmp, host.leader)
            first = play(inventory, extra)
            second = play(inventory, extra)
            yield Box(tmp, first, second, host)
    finally:
        testbed._remove_tree(root)


def healthy(host: booted.BootedHost, timeout_s: float = 240) -> dict[str, Any]:
    svc = Service(host.proc, HTTP_PORT, tuple(host.netns))
    try:
        asyncio.run(svc.wait_ready(timeout_s, "the service's /healthz ok"))
    except RuntimeError as exc:
        journal = host.run("journalctl", "-u", "phoneagent.service", "--no-pager", "-n", "60").stdout
        raise AssertionError(f"{exc}; its journal:\n{journal}") from exc
    state = asyncio.run(svc.health())
    assert state is not None
    return state


def answered(box: Box, want: int) -> None:
    """One SIP call from the configured peer's address, answered by the support agent."""
    call = sipcall.place_call("127.0.0.1", SIP_PORT, "100", [sipcall.Pause(8000)], timeout=60, netns=box.host.netns)
    assert call.ok, call.why
    calls = finished_calls(box.host.root / CALLS_DB, want=want)
    assert len(calls) == want and all(c[1] == "support" and "Hello, this is Northwind support." in c[2] for c in calls), calls


def test_the_play_starts_every_unit_itself_and_a_second_run_changes_nothing(box: Box) -> None:
    assert box.first["failures"] == 0 and box.first["changed"] > 0
    assert box.second["failures"] == 0
    assert box.second["changed"] == 0, box.second["changed_tasks"]
    for unit in UNITS:
        state = box.host.systemctl_show(unit, "ActiveState", "UnitFileState")
        assert state == {"ActiveState": "active", "UnitFileState": "enabled"}, (unit, state)
    ruleset = box.host.run("nft", "list", "table", "inet", "phoneagent")
    assert ruleset.returncode == 0 and str(HTTP_PORT) in ruleset.stdout, ruleset.stdout + ruleset.stderr


def test_the_service_runs_sandboxed_as_its_user_and_answers_a_call(box: Box) -> None:
    state = healthy(box.host)
    assert state["ok"] and state["audiosocket"] and state["ari"] is True, state  # logged in to the provisioned Asterisk
    shown = box.host.systemctl_show("phoneagent.service", "MainPID", "ProtectSystem", "MemoryMax")
    assert shown["ProtectSystem"] == "strict" and shown["MemoryMax"] != "infinity", shown
    uid = next(line.split()[1] for line in box.host.run("cat", f"/proc/{shown['MainPID']}/status").stdout.splitlines() if line.startswith("Uid:"))
    assert box.host.run("id", "-u", "phoneagent").stdout.strip() == uid != "0"
    answered(box, want=1)


def test_systemd_restarts_a_killed_service_and_stops_it_gracefully(box: Box) -> None:
    healthy(box.host)
    before = box.host.systemctl_show("phoneagent.service", "MainPID", "NRestarts")
    box.host.run("kill", "-9", before["MainPID"])
    state = healthy(box.host)
    assert state["ok"], state
    after = box.host.systemctl_show("phoneagent.service", "MainPID", "NRestarts")
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1 and after["MainPID"] != before["MainPID"], (before, after)
    stop = box.host.run("systemctl", "stop", "phoneagent.service", timeout=120)
    assert stop.returncode == 0, stop.stderr
    shown = box.host.systemctl_show("phoneagent.service", "Result", "ExecMainCode", "ExecMainStatus", "ActiveState")
    # SIGTERM ends it cleanly: exit status 0, not killed by the signal or after TimeoutStopSec.
    assert shown == {"Result": "success", "ExecMainCode": "1", "ExecMainStatus": "0", "ActiveState": "inactive"}, shown
    assert box.host.run("systemctl", "start", "phoneagent.service").returncode == 0
    healthy(box.host)


def test_after_a_power_off_the_box_boots_into_answering_calls(box: Box) -> None:
    host = box.host
    host.proc.send_signal(signal.SIGTERM)  # systemd-nspawn powers the container off: every unit stops
    assert host.proc.wait(timeout=120) == 0, host.console_tail()
    with booted.booted(host.root, box.tmp / "console-2.log") as again:
        box.host = again  # the fixture's power-off at the end is this boot's
        for unit in UNITS:
            assert again.systemctl_show(unit, "ActiveState")["ActiveState"] == "active", (unit, again.run("systemctl", "status", unit).stdout)
        healthy(again)
        answered(box, want=2)
