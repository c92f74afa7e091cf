"""The playbook applied for real to a fresh Ubuntu 24.04 root, from the same offline bundle.

The one-box shape (Asterisk and the agent service; Kamailio and PostgreSQL are Debian 12 parts
of the bundle, and their roles refuse another release with a message). The target is a
debootstrap'd noble (devtools/target.py) without python3-venv, as Ubuntu Server ships: the
bundle's noble part brings it, its exact-version Python packages included, and the service runs
from the Python 3.12 wheels. Checked: the release's packages and wheels are the ones used, the
installed config passes the service's check, a SIP call through the provisioned Asterisk is
answered by the example agent, the service stops cleanly, a second run changes nothing.
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

from devtools import sipcall, target
from devtools.ports import free_tcp_port
from tests.ansible import bundle_dir, play, role_alone
from tests.ansible.provisioned import asterisk_started, finished_calls, service_started, stop_as_systemd_does

pytestmark = pytest.mark.timeout(1200)


@dataclass
class Converged:
    root: Path
    bundle: Path
    first: dict[str, Any]
    second: dict[str, Any]
    http_port: int
    sip_port: int
    tmp: Path


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converged]:
    if os.geteuid() != 0:
        pytest.fail("the converge test needs root (debootstrap, chroot, mounts)", pytrace=False)
    src = bundle_dir()
    if "noble" not in json.loads((src / "bundle.json").read_text())["platforms"]:
        pytest.fail(f"{src} has no Ubuntu 24.04 part: ./dev test builds it with --releases bookworm,noble", pytrace=False)
    tmp = tmp_path_factory.mktemp("converge-noble")
    http_port, ari_port, sip_port = free_tcp_port(), free_tcp_port(), sipcall._free_udp_port()
    rtp = sipcall._free_udp_port(even=True)
    with target.fresh_target(tmp / "root", suite="noble") as root:
        inventory = tmp / "hosts.yml"
        host = {"target": {"ansible_connection": "community.general.chroot", "ansible_host": str(root)}}
        inventory.write_text(json.dumps({"all": {"children": {"phoneagent_asterisk": {"hosts": host},
                                                              "phoneagent_agents": {"hosts": host}}}}))
        extra = tmp / "vars.json"
        extra.write_text(json.dumps({
            "phoneagent_bundle_dir": str(src),
            "phoneagent_asterisk_sip_port": sip_port, "phoneagent_asterisk_http_port": ari_port,
            "phoneagent_asterisk_rtp_start": rtp, "phoneagent_asterisk_rtp_end": rtp + 3,
            "phoneagent_asterisk_sip_peers": [{"name": "pbx", "match": "127.0.0.1", "agent": "support", "path": "ari"}],
            "phoneagent_service_listen_port": free_tcp_port(), "phoneagent_service_http_port": http_port,
            "phoneagent_service_ari_url": f"http://127.0.0.1:{ari_port}", "phoneagent_service_ari_app": "provisioned",
            "phoneagent_service_ari_password": "converge-" + os.urandom(12).hex(),
            # no init in a chroot: the tests start the units' commands themselves
            "phoneagent_service_start": False, "phoneagent_asterisk_start": False, "phoneagent_firewall_apply": False,
        }))
        first = play(inventory, extra)
        second = play(inventory, extra)
        yield Converged(root, src, first, second, http_port, sip_port, tmp)


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


def test_a_sip_call_into_the_ubuntu_box_is_answered_by_the_example_agent(converged: Converged) -> None:
    out: list[str] = []
    with asterisk_started(converged.root, converged.tmp / "asterisk-console.log"), \
            service_started(converged.root, converged.http_port, out) as (proc, service):
        state = asyncio.run(service.health())
        assert state is not None and state["ok"] and state["ari"] is True, state
        call = sipcall.place_call("127.0.0.1", converged.sip_port, "100", [sipcall.Pause(8000)], timeout=60)
        assert call.ok, call.errors or call.stdout
        calls = finished_calls(converged.root / "var/lib/phoneagent/calls.db")
        assert len(calls) == 1 and calls[0][1] == "support", calls
        assert "Hello, this is Northwind support." in calls[0][2], calls
        assert stop_as_systemd_does(proc) == 0
    assert "preflight ok" in out[0], out[0][-3000:]


def test_the_debian_only_parts_refuse_ubuntu_with_a_message(converged: Converged) -> None:
    inventory, playbook = role_alone(converged.tmp, converged.root, "phoneagent_kamailio")
    extra = converged.tmp / "kamailio.json"
    extra.write_text(json.dumps({"phoneagent_bundle_dir": str(converged.bundle), "phoneagent_kamailio_listen_address": "127.0.0.1",
                                 "phoneagent_kamailio_asterisk_servers": ["127.0.0.1:5060"]}))
    with pytest.raises(pytest.fail.Exception, match="the Kamailio packages in the bundle are for bookworm; this host runs Ubuntu"):
        play(inventory, extra, playbook, timeout=300)


def test_a_bundle_without_an_ubuntu_part_is_refused_with_a_message(converged: Converged) -> None:
    debian_only = converged.tmp / "debian-only"
    debian_only.mkdir()
    info = json.loads((converged.bundle / "bundle.json").read_text())
    info["platforms"] = {"bookworm": info["platforms"]["bookworm"]}
    (debian_only / "bundle.json").write_text(json.dumps(info))  # the check comes before any file is used
    inventory, playbook = role_alone(converged.tmp, converged.root, "phoneagent_service")
    extra = converged.tmp / "service.json"
    extra.write_text(json.dumps({"phoneagent_bundle_dir": str(debian_only), "phoneagent_service_ari_password": "x" * 20}))
    with pytest.raises(pytest.fail.Exception, match=r"the bundle holds wheels for Debian 12 on x86_64; this host runs Ubuntu 24.04 "
                                                    r"\(noble\) with Python 3.12 on x86_64: build the bundle with --releases noble"):
        play(inventory, extra, playbook, timeout=300)
