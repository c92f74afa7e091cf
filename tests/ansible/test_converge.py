"""The playbook applied for real (not --check) to a fresh Debian 12 root, from the offline bundle.

The target is a copy of a debootstrap'd bookworm (devtools/target.py) reached with the chroot
connection plugin, in both groups (everything on one box); in `./dev test` the whole run is
inside a network namespace with only loopback, so the install is proven to need nothing but the
bundle. Then: every model file matches the bundle's checksums, the installed config passes the
service's own check, the units are enabled with their limits, the provisioned Asterisk and the
service started as their units start them answer a real SIP call with the example agent, and
so does a call through the provisioned Kamailio (Debian 12's own 5.6 package, from the bundle),
logs rotate, old recordings expire, and a second run changes nothing.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import bundle, kamailio, sipcall, target
from devtools.ports import free_tcp_port
from tests.ansible import play, unit_fields
from tests.ansible.provisioned import (ASTERISK_ROOT, UNIT, asterisk_rx, asterisk_started, finished_calls, in_target,
                                       kamailio_started, one_box_inventory, service_started, stop_as_systemd_does, workspace)

# Two converges (~1.1 GB copied, a pip install and a preflight each) run in the module's fixture:
# about 4 minutes on 2 cores, near the suite's 300 s default, which also counts fixture setup.
pytestmark = pytest.mark.timeout(1200)

@dataclass
class Converged:
    root: Path
    bundle: Path
    first: dict[str, Any]
    second: dict[str, Any]
    http_port: int
    ari_app: str
    sip_port: int
    proxy_port: int
    dead_port: int  # a second "Asterisk" in the proxy's list where nothing answers


@pytest.fixture(scope="module")
def converged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Converged]:
    src, tmp = workspace(tmp_path_factory, "converge")
    # Ports of its own: the test bed's Asterisk may be up on 5060/8088 in this namespace.
    http_port, ari_port, sip_port, app = free_tcp_port(), free_tcp_port(), sipcall._free_udp_port(), "provisioned"
    rtp, proxy_port, dead_port = sipcall._free_udp_port(even=True), sipcall._free_udp_port(), sipcall._free_udp_port()
    with target.fresh_target(tmp / "root") as root:
        inventory = one_box_inventory(tmp, root)
        extra = tmp / "vars.json"
        extra.write_text(json.dumps({
            "phoneagent_bundle_dir": str(src),
            "phoneagent_asterisk_sip_port": sip_port, "phoneagent_asterisk_http_port": ari_port,
            "phoneagent_asterisk_rtp_start": rtp, "phoneagent_asterisk_rtp_end": rtp + 3,
            "phoneagent_asterisk_sip_peers": [{"name": "pbx", "match": "127.0.0.1", "agent": "support", "path": "ari"}],
            "phoneagent_service_listen_port": free_tcp_port(), "phoneagent_service_http_port": http_port,
            "phoneagent_service_ari_url": f"http://127.0.0.1:{ari_port}", "phoneagent_service_ari_app": app,
            "phoneagent_service_ari_password": "converge-" + os.urandom(12).hex(),
            "phoneagent_service_default_agent": "appointments",  # the peer's dialplan picks support
            # The proxy on the same box for the test (its own port): the Asterisk above behind it.
            "phoneagent_kamailio_listen_address": "127.0.0.1", "phoneagent_kamailio_sip_port": proxy_port,
            "phoneagent_kamailio_asterisk_servers": [f"127.0.0.1:{sip_port}", f"127.0.0.1:{dead_port}"], "phoneagent_kamailio_probe_interval_s": 1,
            # no init in a chroot: the tests start the units' commands themselves
            "phoneagent_service_start": False, "phoneagent_asterisk_start": False, "phoneagent_firewall_apply": False,
            "phoneagent_kamailio_start": False,
        }))
        first = play(inventory, extra)
        second = play(inventory, extra)
        yield Converged(root, src, first, second, http_port, app, sip_port, proxy_port, dead_port)


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


def test_the_firewall_covers_the_ports_the_play_configured(converged: Converged) -> None:
    """The firewall's behaviour is tests/ansible/test_firewall.py's; here: it protects this box's ports."""
    ruleset = (converged.root / "etc/phoneagent-firewall.nft").read_text()
    ari = next(line for line in (converged.root / ASTERISK_ROOT / "etc/asterisk/http.conf").read_text().splitlines() if line.startswith("bindport"))
    protected = ruleset.split("elements = {", 1)[1].split("}", 1)[0].replace(",", " ").split()
    assert {str(converged.http_port), ari.split("=")[1].strip()} <= set(protected), protected
    assert (converged.root / "etc/systemd/system/multi-user.target.wants/phoneagent-firewall.service").is_symlink()


@pytest.fixture(scope="module")
def provisioned_asterisk(converged: Converged) -> Iterator[Path]:
    with asterisk_started(converged.root, converged.root.parent / "asterisk-console.log") as root:
        yield root


def test_the_provisioned_asterisk_runs_the_agent_dialplan_as_its_own_user(provisioned_asterisk: Path) -> None:
    root = provisioned_asterisk
    assert "'agent' =>" in asterisk_rx(root, "dialplan show phoneagent")
    assert "pbx" in asterisk_rx(root, "pjsip show endpoints")
    assert "phoneagent" in asterisk_rx(root, "ari show users").split()
    assert asterisk_rx(root, "module show like audiosocket").count("Running") == 3
    pid = int((root / ASTERISK_ROOT / "run/asterisk/asterisk.pid").read_text())
    uid = int(next(line.split()[1] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("Uid:")))
    asterisk = next(line for line in (root / ASTERISK_ROOT / "etc/passwd").read_text().splitlines() if line.startswith("asterisk:"))
    assert uid == int(asterisk.split(":")[2]) != 0
    assert (root / "etc/systemd/system/multi-user.target.wants/phoneagent-asterisk.service").is_symlink()
    assert (root / "etc/systemd/system/timers.target.wants/phoneagent-recordings-retention.timer").is_symlink()


@pytest.fixture(scope="module")
def provisioned_kamailio(converged: Converged, provisioned_asterisk: Path) -> Iterator[list[kamailio.Destination]]:
    with kamailio_started(converged.root, ["A", "I"]) as found:
        yield found


def test_the_provisioned_kamailio_probes_the_asterisk_behind_it(converged: Converged,
                                                                 provisioned_kamailio: list[kamailio.Destination]) -> None:
    flags = {d.uri: d.flags[:1] for d in provisioned_kamailio}  # (5.6 lists them last first)
    assert flags == {f"sip:127.0.0.1:{converged.sip_port}": "A", f"sip:127.0.0.1:{converged.dead_port}": "I"}, flags  # up; out
    assert (converged.root / "etc/systemd/system/multi-user.target.wants/kamailio.service").is_symlink()
    assert (converged.root / "etc/kamailio/kamailio.cfg").read_bytes() == kamailio.REPO_CONFIG.read_bytes()


def test_a_sip_call_into_the_box_is_answered_by_the_example_agent_and_the_service_stops_cleanly(
        converged: Converged, provisioned_asterisk: Path, provisioned_kamailio: list[kamailio.Destination]) -> None:
    out: list[str] = []
    with service_started(converged.root, converged.http_port, out) as (proc, service):
        state = asyncio.run(service.health())
        assert state is not None and state["ok"] and state["audiosocket"] and state["ari"] is True, state  # logged in to the provisioned Asterisk
        assert (state["instance"], state["max_calls"]) == ("target", 2), state  # the inventory name; the role's default capacity
        # A PBX at 127.0.0.1 (the configured SIP peer) sends a caller who listens for 8 s.
        call = sipcall.place_call("127.0.0.1", converged.sip_port, "100", [sipcall.Pause(8000)], timeout=60)
        assert call.ok, call.why
        calls = finished_calls(converged.root / "var/lib/phoneagent/calls.db")
        assert len(calls) == 1 and calls[0][1] == "support", calls
        assert "Hello, this is Northwind support." in calls[0][2], calls  # after the recording notice
        # The same through the provisioned Kamailio: it picks the Asterisk, Asterisk the agent.
        call = sipcall.place_call("127.0.0.1", converged.proxy_port, "100", [sipcall.Pause(8000)], timeout=60, via_proxy=True)
        assert call.ok, call.why
        calls = finished_calls(converged.root / "var/lib/phoneagent/calls.db", want=2)
        assert len(calls) == 2 and all(c[1] == "support" and "Hello, this is Northwind support." in c[2] for c in calls), calls
        assert stop_as_systemd_does(proc) == 0
    assert "preflight ok" in out[0], out[0][-3000:]


def test_asterisk_logs_rotate_and_expired_recordings_are_deleted(converged: Converged) -> None:
    root, ast = converged.root, converged.root / ASTERISK_ROOT
    log = ast / "var/log/asterisk/messages.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("a line to rotate\n")
    done = subprocess.run(["chroot", str(root), "/usr/sbin/logrotate", "--force", "/etc/logrotate.d/phoneagent-asterisk"],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert (ast / "var/log/asterisk/messages.log.1").read_text() == "a line to rotate\n"
    recordings = ast / "var/spool/asterisk/recording"
    old, new = recordings / "old-call.wav", recordings / "new-call.wav"
    for f in (old, new):
        f.write_bytes(b"RIFF")
    past = time.time() - 31 * 86400  # the default retention is 30 days
    os.utime(old, (past, past))
    done = in_target(root, unit_fields(root, "etc/systemd/system/phoneagent-recordings-retention.service")["ExecStart"])
    assert done.returncode == 0, done.stderr
    assert not old.exists() and new.exists()
