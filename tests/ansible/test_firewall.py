"""The firewall role applied for real to a fresh Debian 12 root, then its ruleset proven on packets.

The role alone is applied twice (the second run must change nothing) with the chroot connection and
phoneagent_firewall_apply false: no init runs in a chroot. Then the installed unit's own command
lines load the ruleset, with the target's nft, into a throwaway "server" network namespace joined
to a "client" one by a veth pair (devtools/netns.py): the host's firewall is never touched. Each
side has a private address and a public (documentation range) one, in IPv4 and IPv6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import target
from devtools.netns import NetNs, link, namespaces
from tests.ansible import play, role_alone, unit_fields

# Two ansible runs and a copy of the target root; well under this, but above the suite's 300 s default.
pytestmark = pytest.mark.timeout(600)

UNIT = "etc/systemd/system/phoneagent-firewall.service"
RULESET = "etc/phoneagent-firewall.nft"
# Set through the other roles' variables: the role's default port list must pick them up.
PORTS = {"phoneagent_service_listen_port": 19092, "phoneagent_service_http_port": 19100, "phoneagent_asterisk_http_port": 18088,
         "phoneagent_postgresql_port": 15432}
PROTECTED = sorted(PORTS.values())
OPEN_PORT = 19999  # not protected: the admin's rules decide, and here there are none
SERVER = {"private": ["10.77.0.1", "fd77::1"], "public": ["198.51.100.1", "2001:db8:77::1"]}
CLIENT = {"private": ["10.77.0.2", "fd77::2"], "public": ["198.51.100.2", "2001:db8:77::2"]}
# An admin's own table, loaded first: the role's unit must leave it as it is.
ADMIN_TABLE = "table inet admin { chain input { type filter hook input priority filter; policy accept; tcp dport 22 accept; }; }"

# Listens on every port given, dual-stack, until its stdin closes: the kernel completes handshakes
# from the backlog, so nothing needs to accept.
LISTEN = """
import socket, sys
held = []
for port in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", int(port)))
    s.listen(64)
    held.append(s)
print("ready", flush=True)
sys.stdin.read()
"""

# Connects from each source to each destination port: "open", "refused" or "dropped" (no answer in 1 s).
PROBE = """
import json, socket, sys
out = {}
for src, dst, port in json.loads(sys.argv[1]):
    family = socket.AF_INET6 if ":" in dst else socket.AF_INET
    with socket.socket(family) as s:
        s.settimeout(1.0)
        s.bind((src, 0))
        try:
            s.connect((dst, port))
            out[f"{src}>{dst}:{port}"] = "open"
        except ConnectionRefusedError:
            out[f"{src}>{dst}:{port}"] = "refused"
        except TimeoutError:
            out[f"{src}>{dst}:{port}"] = "dropped"
print(json.dumps(out))
"""


@dataclass
class Applied:
    root: Path
    first: dict[str, Any]
    second: dict[str, Any]


@pytest.fixture(scope="module")
def applied(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    if os.geteuid() != 0:
        pytest.fail("the firewall test needs root (chroot, mounts, network namespaces)", pytrace=False)
    tmp = tmp_path_factory.mktemp("firewall")
    with target.fresh_target(tmp / "root") as root:
        inventory, playbook = role_alone(tmp, root, "phoneagent_firewall")
        extra = tmp / "vars.json"
        extra.write_text(json.dumps({**PORTS, "phoneagent_firewall_apply": False}))  # no init in a chroot
        first = play(inventory, extra, playbook, timeout=600)
        second = play(inventory, extra, playbook, timeout=600)
        yield Applied(root, first, second)


def test_the_role_installs_an_enabled_unit_and_a_second_run_changes_nothing(applied: Applied) -> None:
    assert applied.first["failures"] == 0 and applied.first["changed"] > 0
    assert applied.second["failures"] == 0
    assert applied.second["changed"] == 0, applied.second["changed_tasks"]
    ruleset = applied.root / RULESET
    assert ruleset.stat().st_mode & 0o777 == 0o644 and ruleset.stat().st_uid == 0
    unit = unit_fields(applied.root, UNIT)
    assert unit["Type"] == "oneshot" and unit["RemainAfterExit"] == "yes"
    assert unit["ExecStart"] == unit["ExecReload"] == f"/usr/sbin/nft -f /{RULESET}"
    assert (applied.root / "etc/systemd/system/multi-user.target.wants/phoneagent-firewall.service").is_symlink()


def _nft(ns: NetNs, root: Path, command: str) -> str:
    """One of the unit's command lines (or any nft command), with the target's nft, inside `ns`."""
    return ns.run("chroot", str(root), *command.split()).stdout


def _probe(ns: NetNs, checks: list[tuple[str, str, int]]) -> dict[str, str]:
    seen: dict[str, str] = json.loads(ns.run(sys.executable, "-c", PROBE, json.dumps(checks)).stdout)
    return seen


def test_the_ruleset_admits_private_sources_only_to_the_protected_ports(applied: Applied) -> None:
    unit = unit_fields(applied.root, UNIT)
    private = list(zip(CLIENT["private"], SERVER["private"]))
    public = list(zip(CLIENT["public"], SERVER["public"]))
    with namespaces(2) as (server, client):
        link(server, [f"{a}/{64 if ':' in a else 24}" for a in SERVER["private"] + SERVER["public"]],
             client, [f"{a}/{64 if ':' in a else 24}" for a in CLIENT["private"] + CLIENT["public"]])
        server.run("chroot", str(applied.root), "/usr/sbin/nft", ADMIN_TABLE)
        listener = subprocess.Popen(server.argv(sys.executable, "-c", LISTEN, *map(str, PROTECTED + [OPEN_PORT])),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert listener.stdout is not None and listener.stdout.readline().strip() == "ready"
            _nft(server, applied.root, unit["ExecStart"])
            _nft(server, applied.root, unit["ExecReload"])  # the same file again, over the existing table
            tables = _nft(server, applied.root, "/usr/sbin/nft list tables").split()
            assert tables.count("phoneagent") == 1 and "admin" in tables, tables

            seen = _probe(client, [(src, dst, port) for src, dst in private + public for port in PROTECTED + [OPEN_PORT]])
            for src, dst in private:
                for port in PROTECTED + [OPEN_PORT]:
                    assert seen[f"{src}>{dst}:{port}"] == "open", (src, port)
            for src, dst in public:
                for port in PROTECTED:
                    assert seen[f"{src}>{dst}:{port}"] == "dropped", (src, port)
                assert seen[f"{src}>{dst}:{OPEN_PORT}"] == "open", src
            local = _probe(server, [(lo, lo, port) for lo in ("127.0.0.1", "::1") for port in PROTECTED])
            assert set(local.values()) == {"open"}, local

            _nft(server, applied.root, unit["ExecStop"])
            tables = _nft(server, applied.root, "/usr/sbin/nft list tables").split()
            assert "phoneagent" not in tables and "admin" in tables, tables
            seen = _probe(client, [(src, dst, port) for src, dst in public for port in PROTECTED])
            assert set(seen.values()) == {"open"}, seen
        finally:
            listener.kill()
            listener.communicate(timeout=30)
