"""The example inventories render to what each host needs (no host is contacted).

The roles' behaviour is the converge test's; this pins the shapes README describes: in the pool,
the proxy lists both Asterisk servers, each Asterisk takes calls from the proxy only and offers
them to the pool, and every agent host has its own Stasis app and reaches both servers with ARI
settings the service accepts.
"""

from __future__ import annotations

import json
import subprocess
from typing import Any

from phoneagent.settings import AriSettings
from tests.ansible import ANSIBLE, BIN, ansible_env

PLAYBOOK = ANSIBLE.parent / "tests" / "ansible" / "render_vars.yml"


def render(inventory: str) -> dict[str, dict[str, Any]]:
    env = ansible_env(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1", PHONEAGENT_DB_PASSWORD="s@fe:word")
    done = subprocess.run([str(BIN / "ansible-playbook"), "-i", f"inventories/{inventory}", str(PLAYBOOK)],
                          cwd=ANSIBLE, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(done.stdout)
    return {host: result["msg"] for host, result in report["plays"][0]["tasks"][0]["hosts"].items()}


def test_the_pool_inventory_wires_proxy_asterisks_and_agent_hosts() -> None:
    hosts = render("pool")
    assert set(hosts) == {"sip-proxy", "pbx-a", "pbx-b", "records", "agent-a", "agent-b"}
    assert hosts["records"]["postgresql"] == {"listen": "10.0.0.40", "clients": ["10.0.0.0/24"]}
    proxy = hosts["sip-proxy"]
    assert proxy["kamailio_listen"] == "10.0.0.10" and proxy["kamailio_servers"] == ["10.0.0.21", "10.0.0.22"]
    for pbx in ("pbx-a", "pbx-b"):
        assert hosts[pbx]["sip_peers"] == [{"name": "kamailio", "match": "10.0.0.10", "agent": "support", "path": "pool"}]
    apps = set()
    for name, ip in (("agent-a", "10.0.0.31"), ("agent-b", "10.0.0.32")):
        ari = AriSettings(**hosts[name]["ari"])  # what the service's config check would say
        assert (ari.url, ari.servers) == ("http://10.0.0.21:8088", ["http://10.0.0.22:8088"])
        assert ari.app.startswith("phoneagent") and hosts[name]["advertise"] == f"{ip}:9092"
        assert hosts[name]["db"] == "postgresql+psycopg://phoneagent:s%40fe%3Aword@10.0.0.40/phoneagent"  # escaped for the URL
        apps.add(ari.app)
    assert len(apps) == 2, apps  # hosts sharing an Asterisk need their own app


def test_the_single_box_inventory_keeps_everything_on_loopback() -> None:
    [box] = render("single-box").values()
    assert box["ari"]["servers"] == [] and box["kamailio_servers"] is None  # the roles' loopback defaults hold
    assert box["sip_peers"][0]["path"] == "ari"
