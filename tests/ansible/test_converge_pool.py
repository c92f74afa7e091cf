"""The pool inventory (ansible/inventories/pool) applied for real: six hosts on one private network.

Kamailio in front of two Asterisk servers, two agent hosts taking the calls of both, one
PostgreSQL for every call record: six fresh Debian 12 roots, each host with a network namespace
of its own on one bridge (devtools.cluster.Lan; this process is .1, the carrier). The inventory
is the repo's own group_vars with this network's addresses and chroot connections, so what is
tested is the shape README documents. The first run installs everything but finds no database
server running (no init in a chroot); the cluster is started as its unit starts it and the second
run creates the database and changes nothing else. Then every host's units are started in its
own namespace, and calls sent to the proxy are answered by the pool and recorded in the shared
database by the agent host that took each.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from db import CallStore
from devtools import cluster, sipcall, target
from tests.ansible import ANSIBLE, play
from tests.ansible.provisioned import asterisk_started, kamailio_started, service_started, stop_as_systemd_does, workspace

pytestmark = pytest.mark.timeout(2400)

HOSTS = {"sip-proxy": 2, "pbx-a": 11, "pbx-b": 12, "agent-a": 21, "agent-b": 22, "records": 40}


@dataclass
class Pool:
    roots: dict[str, Path]
    lan: cluster.Lan
    runs: list[dict[str, Any]]
    db_url: str
    tmp: Path


def _cluster(root: Path, netns: list[str], action: str) -> subprocess.CompletedProcess[str]:
    """The records host's cluster, as its unit (postgresql@15-main) runs pg_ctlcluster."""
    return subprocess.run([*netns, "chroot", str(root), "/usr/bin/pg_ctlcluster", "--skip-systemctl-redirect", "15", "main", action],
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pool]:
    src, tmp = workspace(tmp_path_factory, "converge-pool")
    password = "records-" + os.urandom(12).hex()
    with contextlib.ExitStack() as stack:
        lan = stack.enter_context(cluster.network())
        roots = {name: stack.enter_context(target.fresh_target(tmp / name)) for name in HOSTS}
        for name, octet in HOSTS.items():
            lan.add(name, octet)
        inventory = tmp / "inventory"
        inventory.mkdir()
        shutil.copytree(ANSIBLE / "inventories" / "pool" / "group_vars", inventory / "group_vars")
        example = yaml.safe_load((ANSIBLE / "inventories" / "pool" / "hosts.yml").read_text())
        for group in example["all"]["children"].values():
            for name in group["hosts"]:
                group["hosts"][name] = {"ansible_connection": "community.general.chroot", "ansible_host": str(roots[name]),
                                        "phoneagent_address": lan.addresses[name]}
        example["all"]["children"]["phoneagent_postgresql"]["hosts"]["records"]["phoneagent_postgresql_clients"] = [f"{cluster.SUBNET}.0/24"]
        (inventory / "hosts.yml").write_text(json.dumps(example))
        extra = tmp / "vars.json"
        extra.write_text(json.dumps({
            "phoneagent_bundle_dir": str(src), "phoneagent_service_ari_password": "pool-" + os.urandom(12).hex(),
            "phoneagent_postgresql_password": password,
            # no init in a chroot: the tests start the units' commands themselves
            "phoneagent_service_start": False, "phoneagent_asterisk_start": False, "phoneagent_firewall_apply": False,
            "phoneagent_kamailio_start": False, "phoneagent_postgresql_start": False,
        }))
        runs = [play(inventory / "hosts.yml", extra, timeout=2400)]
        records = lan.hosts["records"].argv()
        started = _cluster(roots["records"], records, "start")
        assert started.returncode == 0, started.stdout + started.stderr
        stack.callback(_cluster, roots["records"], records, "stop")
        runs.append(play(inventory / "hosts.yml", extra, timeout=2400))
        url = f"postgresql+psycopg://phoneagent:{password}@{lan.addresses['records']}/phoneagent"
        yield Pool(roots, lan, runs, url, tmp)


def test_the_second_run_only_creates_the_database(pool: Pool) -> None:
    first, second = pool.runs
    assert all(stats["failures"] == 0 and stats["changed"] > 0 for stats in first["hosts"].values()), first["hosts"]
    assert second["changed_tasks"] == ["phoneagent_postgresql : Create the service's login and database (only what is missing)"], \
        second["changed_tasks"]
    for name in ("agent-a", "agent-b"):
        config = (pool.roots[name] / "etc/phoneagent/service.yaml").read_text()
        assert f"app: phoneagent-{name}" in config and f"advertise: {pool.lan.addresses[name]}:9092" in config, config


def test_calls_to_the_proxy_are_answered_by_the_pool_and_recorded_in_the_shared_database(pool: Pool) -> None:
    ns = {name: pool.lan.hosts[name].argv() for name in HOSTS}
    logs: dict[str, list[str]] = {"agent-a": [], "agent-b": []}
    with contextlib.ExitStack() as stack:
        for pbx in ("pbx-a", "pbx-b"):
            stack.enter_context(asterisk_started(pool.roots[pbx], pool.tmp / f"{pbx}-console.log", netns=ns[pbx]))
        found = stack.enter_context(kamailio_started(pool.roots["sip-proxy"], ["A", "A"], netns=ns["sip-proxy"]))
        assert sorted(d.flags[:1] for d in found) == ["A", "A"], found  # both Asterisk servers probed up
        services = {name: stack.enter_context(service_started(pool.roots[name], 9100, logs[name], netns=ns[name]))
                    for name in ("agent-a", "agent-b")}
        for name, (_, service) in services.items():
            state = _connected(service)
            assert state["instance"] == name and set(state["asterisks"]) == {f"http://{pool.lan.addresses[p]}:8088" for p in ("pbx-a", "pbx-b")}, state
        with ThreadPoolExecutor(2) as calls:
            results = list(calls.map(lambda _: sipcall.place_call(
                pool.lan.addresses["sip-proxy"], 5060, "100", [sipcall.Pause(8000)], local_ip=cluster.SELF, via_proxy=True,
                timeout=90, workdir=pool.tmp), range(2)))
        assert all(r.ok for r in results), [r.why for r in results]
        store = CallStore(pool.db_url)
        try:
            deadline = time.monotonic() + 30
            while len(done := [c for c in store.list_calls(limit=10) if c.ended_at is not None]) < 2 and time.monotonic() < deadline:
                time.sleep(0.5)
        finally:
            store.close()
        assert len(done) == 2 and all(c.agent == "support" and c.host in ("agent-a", "agent-b") for c in done), done
        for _, (proc, _) in services.items():
            assert stop_as_systemd_does(proc) == 0


def _connected(service: Any, timeout: float = 60) -> dict[str, Any]:
    """/healthz once the host is logged in to every Asterisk of the pool."""
    deadline = time.monotonic() + timeout
    while True:
        state = asyncio.run(service.health())
        if state and state["ok"] and state.get("asterisks") and all(state["asterisks"].values()):
            return dict(state)
        assert time.monotonic() < deadline, state
        time.sleep(0.5)
