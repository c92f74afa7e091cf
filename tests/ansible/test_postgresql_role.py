"""The PostgreSQL role applied for real to fresh Debian 12 and Ubuntu 24.04 roots, from the offline bundle.

The role alone, with the chroot connection and no init: the first run installs the release's own
PostgreSQL (Debian 12: 15, Ubuntu 24.04: 16) from the bundle's part for it and configures it,
but finds no server running, so it creates no database. The cluster is then started as its systemd unit starts it (pg_ctlcluster), and the next
run creates the service's login and database; a third run changes nothing. Then the service's own
call store connects over TCP with the role's password, migrates the schema and keeps a call,
which is what every agent host sharing the records does.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from db import CallStore
from devtools import target
from devtools.ports import free_tcp_port
from tests.ansible import bundle_dir, play, role_alone

pytestmark = pytest.mark.timeout(900)
UNIT = "lib/systemd/system/postgresql@.service"


@dataclass
class Applied:
    root: Path
    runs: list[dict[str, Any]]
    port: int
    password: str
    version: str


@pytest.fixture(scope="module", params=["bookworm", "noble"])
def applied(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Applied]:
    if os.geteuid() != 0:
        pytest.fail("the PostgreSQL role test needs root (chroot, mounts)", pytrace=False)
    suite: str = request.param
    src = bundle_dir()
    platforms = json.loads((src / "bundle.json").read_text())["platforms"]
    if suite not in platforms:
        pytest.fail(f"{src} has no {suite} part: ./dev test builds it with --releases bookworm,noble", pytrace=False)
    version = platforms[suite]["postgresql"]["version"]
    tmp = tmp_path_factory.mktemp(f"postgresql-{suite}")
    port, password = free_tcp_port(), "records-" + os.urandom(12).hex()
    with target.fresh_target(tmp / "root", suite=suite) as root:
        inventory, playbook = role_alone(tmp, root, "phoneagent_postgresql")
        extra = tmp / "vars.json"
        extra.write_text(json.dumps({"phoneagent_bundle_dir": str(src), "phoneagent_postgresql_port": port,
                                     "phoneagent_postgresql_listen_addresses": "127.0.0.1",
                                     "phoneagent_postgresql_clients": ["127.0.0.1/32"],
                                     "phoneagent_postgresql_password": password,
                                     "phoneagent_postgresql_start": False}))  # no init in a chroot
        runs = [play(inventory, extra, playbook, timeout=600)]
        cluster = ["chroot", str(root), "/usr/bin/pg_ctlcluster", "--skip-systemctl-redirect", version, "main"]
        started = subprocess.run([*cluster, "start"], capture_output=True, text=True, timeout=120, check=False)
        assert started.returncode == 0, started.stdout + started.stderr
        try:
            runs += [play(inventory, extra, playbook, timeout=600), play(inventory, extra, playbook, timeout=600)]
            yield Applied(root, runs, port, password, version)
        finally:
            subprocess.run([*cluster, "stop", "-m", "fast"], capture_output=True, timeout=120, check=False)


def test_the_database_is_made_once_the_server_runs_and_a_third_run_changes_nothing(applied: Applied) -> None:
    first, second, third = ([t.removeprefix("phoneagent_postgresql : ") for t in run["changed_tasks"]] for run in applied.runs)
    assert "phoneagent_debs : Install them from the bundle" in first  # the shared role, included
    assert "Create the service's login and database (only what is missing)" not in first  # no server yet
    assert second == ["Create the service's login and database (only what is missing)"], second
    assert third == [] and applied.runs[2]["changed"] == 0, third
    assert "ExecStart=-/usr/bin/pg_ctlcluster --skip-systemctl-redirect %i start" in (applied.root / UNIT).read_text()
    sql = applied.root / f"etc/postgresql/{applied.version}/main/phoneagent-init.sql"
    assert sql.stat().st_mode & 0o777 == 0o600  # it holds the password


def test_an_agent_host_s_call_store_keeps_its_records_there(applied: Applied) -> None:
    url = f"postgresql+psycopg://phoneagent:{applied.password}@127.0.0.1:{applied.port}/phoneagent"
    store = CallStore(url)
    try:
        store.start_call("0b4a6f52-8d7e-4a53-9b43-2f2f3c8e1a10", direction="inbound", caller="1001", agent="support",
                         started_at=datetime(2026, 12, 2, 12, tzinfo=UTC))
        store.finish_call("0b4a6f52-8d7e-4a53-9b43-2f2f3c8e1a10", end_reason="caller_hangup", ended_at=datetime(2026, 12, 2, 12, 1, tzinfo=UTC))
        [call] = store.list_calls(limit=10)
        assert call.caller == "1001" and call.end_reason == "caller_hangup"
    finally:
        store.close()
    with pytest.raises(Exception, match="password authentication failed"):
        CallStore(url.replace(applied.password, "wrong")).list_calls(limit=1)
