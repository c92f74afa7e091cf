"""The playbook applied for real to the "Asterisk and the agent on separate hosts" shape.

Two fresh Debian 12 roots, each with a network namespace that plays its host's network, on one
private network (devtools.cluster.Lan: the Asterisk host .11, the agent host .21), and the inventory
ansible/README.md documents for this shape: Asterisk's ARI on its private address, the service
listening on 0.0.0.0 and advertising its private address, ARI reached across the link. One run of
site.yml provisions both; then each host's units are started in its own namespace, and a caller
on the Asterisk host's network is answered by the agent host on both paths: through ARI (the
service places the AudioSocket leg at its advertised address) and straight to AudioSocket from
the dialplan to the listener of the agent the peer names (an agent file's audiosocket_port, from
the site's own agent files). The agent host has no Asterisk and the Asterisk host no service or
models; the agent's own port is in the firewall's protected set.
Idempotence and the rest of each role are the one-box converges' (test_converge*.py).
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from devtools import cluster, netns, sipcall, target
from devtools.ports import free_tcp_port
from tests.ansible import bundle_dir, play, role_alone
from tests.ansible.provisioned import (ASTERISK_ROOT, asterisk_started, finished_calls, service_started, stop_as_systemd_does,
                                       workspace)

pytestmark = pytest.mark.timeout(1200)

PBX_IP, AGENT_IP = f"{cluster.SUBNET}.11", f"{cluster.SUBNET}.21"


@dataclass
class Hosts:
    pbx: Path  # the Asterisk host's root
    agent: Path
    pbx_net: netns.NetNs
    agent_net: netns.NetNs
    run: dict[str, Any]
    http_port: int
    sip_port: int
    shipments_port: int
    tmp: Path


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hosts]:
    src, tmp = workspace(tmp_path_factory, "converge-hosts")
    http_port, ari_port, listen_port, sip_port = free_tcp_port(), free_tcp_port(), free_tcp_port(), sipcall._free_udp_port()
    rtp, shipments_port = sipcall._free_udp_port(even=True), free_tcp_port()
    # The site's own agent files: the examples, the shipments agent with a listener of its own
    # (how the direct path picks an agent: AudioSocket carries only a UUID).
    agents = tmp / "agents"
    shutil.copytree(src / "agents", agents)
    with (agents / "shipments.yaml").open("a") as f:
        f.write(f"audiosocket_port: {shipments_port}\n")
    with target.fresh_target(tmp / "pbx") as pbx, target.fresh_target(tmp / "agent") as agent, cluster.network() as lan:
        pbx_net, agent_net = lan.add("pbx", 11), lan.add("agent", 21)
        inventory = tmp / "hosts.yml"

        def host(root: Path, **hostvars: Any) -> dict[str, Any]:
            return {"ansible_connection": "community.general.chroot", "ansible_host": str(root), **hostvars}

        inventory.write_text(json.dumps({"all": {"children": {
            "phoneagent_asterisk": {"hosts": {"pbx": host(
                pbx, phoneagent_asterisk_sip_bind="0.0.0.0", phoneagent_asterisk_http_bind=PBX_IP,
                phoneagent_asterisk_audiosocket=f"{AGENT_IP}:{listen_port}")}},
            "phoneagent_agents": {"hosts": {"target": host(
                agent, phoneagent_service_listen_host="0.0.0.0", phoneagent_service_advertise=f"{AGENT_IP}:{listen_port}",
                phoneagent_service_ari_url=f"http://{PBX_IP}:{ari_port}")}},
        }}}))
        extra = tmp / "vars.json"
        extra.write_text(json.dumps({
            "phoneagent_bundle_dir": str(src),
            "phoneagent_asterisk_sip_port": sip_port, "phoneagent_asterisk_http_port": ari_port,
            "phoneagent_asterisk_rtp_start": rtp, "phoneagent_asterisk_rtp_end": rtp + 7,
            # The PBX's calls (from the Asterisk host itself here) take the ARI path; calls from
            # its private address go straight to the agent's AudioSocket from the dialplan.
            "phoneagent_asterisk_sip_peers": [{"name": "pbx", "match": "127.0.0.1", "agent": "support", "path": "ari"},
                                              {"name": "lan", "match": PBX_IP, "agent": "shipments", "path": "direct",
                                               "audiosocket": f"{AGENT_IP}:{shipments_port}"}],
            "phoneagent_service_agents_dir": str(agents),
            "phoneagent_service_listen_port": listen_port, "phoneagent_service_http_port": http_port,
            "phoneagent_service_ari_app": "provisioned", "phoneagent_service_ari_password": "hosts-" + os.urandom(12).hex(),
            # no init in a chroot: the tests start the units' commands themselves
            "phoneagent_service_start": False, "phoneagent_asterisk_start": False, "phoneagent_firewall_apply": False,
        }))
        run = play(inventory, extra)
        yield Hosts(pbx, agent, pbx_net, agent_net, run, http_port, sip_port, shipments_port, tmp)


def test_one_run_provisions_each_host_with_its_own_part(hosts: Hosts) -> None:
    for name in ("pbx", "target"):
        assert hosts.run["hosts"][name]["failures"] == 0 and hosts.run["hosts"][name]["changed"] > 0, hosts.run["hosts"]
    assert (hosts.pbx / ASTERISK_ROOT / "usr/sbin/asterisk").is_file() and not (hosts.pbx / "opt/phoneagent/venv").exists()
    assert (hosts.agent / "opt/phoneagent/venv/bin/phoneagent").is_file() and not (hosts.agent / ASTERISK_ROOT).exists()
    assert not (hosts.pbx / "opt/phoneagent/models").exists()
    http = (hosts.pbx / ASTERISK_ROOT / "etc/asterisk/http.conf").read_text()
    assert f"bindaddr = {PBX_IP}" in http or f"bindaddr={PBX_IP}" in http, http
    # The agent file's own AudioSocket port is kept off public addresses like the main one.
    ruleset = (hosts.agent / "etc/phoneagent-firewall.nft").read_text()
    protected = ruleset.split("elements = {", 1)[1].split("}", 1)[0].replace(",", " ").split()
    assert {str(hosts.http_port), str(hosts.shipments_port)} <= set(protected), protected


def test_a_direct_path_peer_naming_an_agent_without_its_listener_is_refused(hosts: Hosts) -> None:
    inventory, playbook = role_alone(hosts.tmp, hosts.pbx, "phoneagent_asterisk")
    extra = hosts.tmp / "bad-peer.json"
    extra.write_text(json.dumps({"phoneagent_bundle_dir": str(bundle_dir()), "phoneagent_asterisk_ari_password": "x" * 20,
                                 "phoneagent_asterisk_sip_peers": [{"name": "lan", "match": PBX_IP, "agent": "shipments", "path": "direct"}]}))
    with pytest.raises(pytest.fail.Exception, match="SIP peer lan: on the direct path AudioSocket carries no agent name, so agent "
                                                    "shipments needs its own listener: set audiosocket: "):
        play(inventory, extra, playbook, timeout=300)


def test_a_caller_on_the_asterisk_host_is_answered_by_the_agent_host_on_both_paths(hosts: Hosts) -> None:
    pbx_ns, agent_ns = hosts.pbx_net.argv(), hosts.agent_net.argv()
    out: list[str] = []
    with asterisk_started(hosts.pbx, hosts.tmp / "asterisk-console.log", netns=pbx_ns), \
            service_started(hosts.agent, hosts.http_port, out, netns=agent_ns) as (proc, service):
        state = asyncio.run(service.health())
        assert state is not None and state["ok"] and state["ari"] is True, state  # logged in to ARI across the link
        call = sipcall.place_call("127.0.0.1", hosts.sip_port, "100", [sipcall.Pause(8000)], timeout=60, netns=pbx_ns)
        assert call.ok, call.why
        calls = finished_calls(hosts.agent / "var/lib/phoneagent/calls.db")
        assert len(calls) == 1 and calls[0][1] == "support" and "Hello, this is Northwind support." in calls[0][2], calls
        call = sipcall.place_call(PBX_IP, hosts.sip_port, "100", [sipcall.Pause(8000)], timeout=60, netns=pbx_ns, local_ip=PBX_IP)
        assert call.ok, call.why
        calls = finished_calls(hosts.agent / "var/lib/phoneagent/calls.db", want=2)
        assert sorted(c[1] for c in calls) == ["shipments", "support"], calls
        assert "Northwind Shipping" in next(c[2] for c in calls if c[1] == "shipments"), calls
        assert stop_as_systemd_does(proc) == 0
    assert "preflight ok" in out[0], out[0][-3000:]


def test_a_broken_agent_file_stops_the_play_and_the_live_agent_files_stay(hosts: Hosts) -> None:
    broken = hosts.tmp / "broken-agents"
    shutil.copytree(hosts.tmp / "agents", broken)
    with (broken / "support.yaml").open("a") as f:
        f.write("audiosocket_port: 80\n")
    live = hosts.agent / "etc/phoneagent/agents/support.yaml"
    before = live.read_bytes()
    inventory, playbook = role_alone(hosts.tmp, hosts.agent, "phoneagent_service")
    extra = hosts.tmp / "broken.json"
    extra.write_text(json.dumps({"phoneagent_bundle_dir": str(bundle_dir()), "phoneagent_service_agents_dir": str(broken),
                                 "phoneagent_service_ari_password": "x" * 20, "phoneagent_service_start": False,
                                 "phoneagent_service_preflight": False}))
    with pytest.raises(pytest.fail.Exception, match=r"(?s)Check the staged agent files with the service.*support\.yaml: 1 problem.*audiosocket_port: "
                                                    r"Input should be greater than or equal to 1024"):
        play(inventory, extra, playbook, timeout=600)
    assert live.read_bytes() == before
