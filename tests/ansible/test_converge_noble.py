"""The playbook applied for real to a fresh Ubuntu 24.04 root, from the same offline bundle.

The one-box shape with the SIP proxy: Asterisk, the agent service and Kamailio (Ubuntu's own
5.7, from the bundle's noble part). The target is a debootstrap'd noble (devtools/target.py)
without python3-venv, as Ubuntu Server ships: the bundle's noble part brings it, its
exact-version Python packages included, and the service runs from the Python 3.12 wheels.
Checked: the release's packages and wheels are the ones used, the installed config passes the
service's check, a SIP call through the provisioned Asterisk is answered by the example agent,
and so is one through the provisioned Kamailio, the service stops cleanly, a second run changes
nothing; a bundle without a noble part is refused by each role with a message. (PostgreSQL on
noble: tests/ansible/test_postgresql_role.py.)
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import kamailio, sipcall, target
from devtools.ports import free_tcp_port
from tests.ansible import play, role_alone
from tests.ansible.provisioned import (asterisk_started, finished_calls, kamailio_started, one_box_inventory, service_started,
                                       stop_as_systemd_does, workspace)

pytestmark = pytest.mark.timeout(1200)


@dataclass
class Converged:
    root: Path
    bundle: Path
    first: dict[str, Any]
    second: dict[str, Any]
    http_port: int
    sip_port: int
    proxy_port: int
    tmp: Path


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converged]:
    src, tmp = workspace(tmp_path_factory, "converge-noble")
    if "noble" not in json.loads((src / "bundle.json").read_text())["platforms"]:
        pytest.fail(f"{src} has no Ubuntu 24.04 part: ./dev test builds it with --releases bookworm,noble", pytrace=False)
    http_port, ari_port, sip_port = free_tcp_port(), free_tcp_port(), sipcall._free_udp_port()
    rtp, proxy_port, dead_port = sipcall._free_udp_port(even=True), sipcall._free_udp_port(), sipcall._free_udp_port()
    with target.fresh_target(tmp / "root", suite="noble") as root:
        inventory = one_box_inventory(tmp, root)
        extra = tmp / "vars.json"
        extra.write_text(json.dumps({
            "phoneagent_bundle_dir": str(src),
            "phoneagent_asterisk_sip_port": sip_port, "phoneagent_asterisk_http_port": ari_port,
            "phoneagent_asterisk_rtp_start": rtp, "phoneagent_asterisk_rtp_end": rtp + 3,
            "phoneagent_asterisk_sip_peers": [{"name": "pbx", "match": "127.0.0.1", "agent": "support", "path": "ari"}],
            "phoneagent_service_listen_port": free_tcp_port(), "phoneagent_service_http_port": http_port,
            "phoneagent_service_ari_url": f"http://127.0.0.1:{ari_port}", "phoneagent_service_ari_app": "provisioned",
            "phoneagent_service_ari_password": "converge-" + os.urandom(12).hex(),
            # The proxy on the same box (its own port): the Asterisk above and a dead server behind it.
            "phoneagent_kamailio_listen_address": "127.0.0.1", "phoneagent_kamailio_sip_port": proxy_port,
            "phoneagent_kamailio_asterisk_servers": [f"127.0.0.1:{sip_port}", f"127.0.0.1:{dead_port}"],
            "phoneagent_kamailio_probe_interval_s": 1, "phoneagent_kamailio_start": False,
            # no init in a chroot: the tests start the units' commands themselves
            "phoneagent_service_start": False, "phoneagent_asterisk_start": False, "phoneagent_firewall_apply": False,
        }))
        first = play(inventory, extra)
        second = play(inventory, extra)
        yield Converged(root, src, first, second, http_port, sip_port, proxy_port, tmp)


def test_ubuntu_gets_its_own_packages_and_wheels_and_a_second_run_changes_nothing(converged: Converged) -> None:
    assert converged.first["failures"] == 0
    assert "phoneagent_debs : Install them from the bundle" in converged.first["changed_tasks"]  # python3-venv & co
    assert converged.second["changed"] == 0, converged.second["changed_tasks"]
    root = converged.root
    status = subprocess.run(["chroot", str(root), "dpkg-query", "--show", "--showformat=${Version}", "python3.12-venv"],
                            capture_output=True, text=True, timeout=60, check=False)
    noble = json.loads((converged.bundle / "bundle.json").read_text())["platforms"]["noble"]
    assert status.stdout and status.stdout in noble["debs"]["python3.12-venv"].replace("%3a", ":"), status
    version = subprocess.run(["chroot", str(root), "/opt/phoneagent/venv/bin/python", "-c",
                              "import sys, numpy; print(sys.version_info[:2], numpy.__file__)"],
                             capture_output=True, text=True, timeout=60, check=False)
    assert version.stdout.startswith("(3, 12)") and "python3.12/site-packages" in version.stdout, version
    checked = subprocess.run(["chroot", str(root), "/usr/sbin/runuser", "-u", "phoneagent", "--", "/opt/phoneagent/venv/bin/phoneagent",
                              "check", "--config", "/etc/phoneagent/service.yaml"], capture_output=True, text=True, timeout=120, check=False)
    assert checked.returncode == 0 and "agents: appointments, shipments, support" in checked.stdout, checked.stderr


def test_the_proxy_gets_ubuntu_s_kamailio_and_a_sip_call_through_it_is_answered_too(converged: Converged) -> None:
    noble = json.loads((converged.bundle / "bundle.json").read_text())["platforms"]["noble"]
    status = subprocess.run(["chroot", str(converged.root), "dpkg-query", "--show", "--showformat=${Version}", "kamailio"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert status.stdout.startswith("5.7") and status.stdout in noble["kamailio"]["debs"]["kamailio"].replace("%3a", ":"), status
    assert (converged.root / "etc/kamailio/kamailio.cfg").read_bytes() == kamailio.REPO_CONFIG.read_bytes()
    out: list[str] = []
    with asterisk_started(converged.root, converged.tmp / "asterisk-console.log"), kamailio_started(converged.root, ["A", "I"]) as found, \
            service_started(converged.root, converged.http_port, out) as (proc, service):
        assert sorted(d.flags[:1] for d in found) == ["A", "I"], found  # the Asterisk up, the dead server out
        state = asyncio.run(service.health())
        assert state is not None and state["ok"] and state["ari"] is True, state
        call = sipcall.place_call("127.0.0.1", converged.sip_port, "100", [sipcall.Pause(8000)], timeout=60)
        assert call.ok, call.why
        call = sipcall.place_call("127.0.0.1", converged.proxy_port, "100", [sipcall.Pause(8000)], timeout=60, via_proxy=True)
        assert call.ok, call.why
        calls = finished_calls(converged.root / "var/lib/phoneagent/calls.db", want=2)
        assert len(calls) == 2 and all(c[1] == "support" and "Hello, this is Northwind support." in c[2] for c in calls), calls
        assert stop_as_systemd_does(proc) == 0
    assert "preflight ok" in out[0], out[0][-3000:]


@pytest.mark.parametrize(("role", "message"), [
    ("phoneagent_service", r"the bundle holds wheels for Debian 12 on x86_64; this host runs Ubuntu 24.04 \(noble\) with Python 3.12 "
                           r"on x86_64: build the bundle with --releases noble"),
    ("phoneagent_kamailio", r"the bundle has no Kamailio packages for Ubuntu 24.04 \(noble\): build the bundle with --releases noble"),
    ("phoneagent_postgresql", r"the bundle has no PostgreSQL packages for Ubuntu 24.04 \(noble\): build the bundle with --releases noble"),
])
def test_a_bundle_without_an_ubuntu_part_is_refused_by_each_role_with_a_message(converged: Converged, role: str, message: str) -> None:
    debian_only = converged.tmp / "debian-only"
    debian_only.mkdir(exist_ok=True)
    info = json.loads((converged.bundle / "bundle.json").read_text())
    info["platforms"] = {"bookworm": info["platforms"]["bookworm"]}
    (debian_only / "bundle.json").write_text(json.dumps(info))  # the check comes before any file is used
    inventory, playbook = role_alone(converged.tmp, converged.root, role)
    extra = converged.tmp / f"{role}.json"
    extra.write_text(json.dumps({"phoneagent_bundle_dir": str(debian_only), "phoneagent_service_ari_password": "x" * 20,
                                 "phoneagent_kamailio_listen_address": "127.0.0.1", "phoneagent_kamailio_asterisk_servers": ["127.0.0.1"],
                                 "phoneagent_postgresql_password": "x" * 20}))
    with pytest.raises(pytest.fail.Exception, match=message):
        play(inventory, extra, playbook, timeout=300)
