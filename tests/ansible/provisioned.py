"""A converged target's units started as systemd would start them (no init runs in a chroot),
and what they recorded: shared by the Debian 12 and Ubuntu 24.04 converge tests."""

from __future__ import annotations

import asyncio
import contextlib
import shlex
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from devtools.serve import Service
from tests.ansible import unit_fields

UNIT = "etc/systemd/system/phoneagent.service"
ASTERISK_UNIT = "etc/systemd/system/phoneagent-asterisk.service"
ASTERISK_ROOT = "opt/phoneagent-asterisk"


def unit_command(root: Path) -> tuple[list[str], dict[str, str]]:
    """The service's ExecStart and its EnvironmentFile's variables, as systemd would use them."""
    fields = unit_fields(root, UNIT)
    env_file = root / fields["EnvironmentFile"].lstrip("/")
    env = dict(line.split("=", 1) for line in env_file.read_text().splitlines() if "=" in line and not line.startswith("#"))
    return fields["ExecStart"].split(), env


def in_target(root: Path, command_line: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """One of a unit's command lines, run in the target as systemd would run it there."""
    return subprocess.run(["chroot", str(root), *shlex.split(command_line)], capture_output=True, text=True, timeout=timeout, check=False)


def asterisk_rx(root: Path, command: str) -> str:
    done = subprocess.run(["chroot", str(root), "/usr/sbin/chroot", f"/{ASTERISK_ROOT}", "/usr/sbin/asterisk", "-rx", command],
                          capture_output=True, text=True, timeout=30, check=False)
    return done.stdout if done.returncode == 0 else ""


@contextlib.contextmanager
def asterisk_started(root: Path, console: Path) -> Iterator[Path]:
    """The installed Asterisk, started as its unit starts it (ExecStartPre, ExecStart; ExecStop after)."""
    unit = unit_fields(root, ASTERISK_UNIT)
    pre = in_target(root, unit["ExecStartPre"])
    assert pre.returncode == 0, pre.stderr
    with open(console, "w") as out:
        proc = subprocess.Popen(["chroot", str(root), *shlex.split(unit["ExecStart"])], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while "fully booted" not in asterisk_rx(root, "core waitfullybooted") and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.3)
        assert proc.poll() is None, f"the provisioned Asterisk exited: {console.read_text()[-3000:]}"
        yield root
    finally:
        in_target(root, unit["ExecStop"])
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@contextlib.contextmanager
def service_started(root: Path, http_port: int, log: list[str]) -> Iterator[tuple[subprocess.Popen[str], Service]]:
    """The service started as its unit starts it (its user, its environment file only), once
    /healthz answers; killed if the test did not stop it. Its output lands in `log`."""
    argv, env = unit_command(root)
    # setpriv execs (runuser stays as a parent and dies by the signal itself): the exit status
    # seen here is the service's own, as systemd sees it.
    as_service = ["/usr/bin/setpriv", "--reuid=phoneagent", "--regid=phoneagent", "--init-groups", "--"]
    proc = subprocess.Popen(["chroot", str(root), *as_service, "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    service = Service(proc, http_port)
    try:
        asyncio.run(service.wait_ready(240))  # the preflight loads each engine first
        yield proc, service
    finally:
        if proc.poll() is None:
            proc.kill()
        log.append(proc.communicate(timeout=30)[0])


def stop_as_systemd_does(proc: subprocess.Popen[str]) -> int:
    proc.send_signal(signal.SIGTERM)  # the unit's KillSignal
    return proc.wait(timeout=60)


def finished_calls(db: Path, timeout: float = 30, want: int = 1) -> list[tuple[str, str, str]]:
    """(call id, agent, first agent turn) of every call whose record is finalised."""
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(db) as conn:
            rows = conn.execute("SELECT c.id, c.agent, (SELECT t.text FROM turns t WHERE t.call_id = c.id AND t.role = 'agent' "
                                "ORDER BY t.turn_index LIMIT 1) FROM calls c WHERE c.ended_at IS NOT NULL").fetchall()
        if len(rows) >= want or time.monotonic() > deadline:
            return [(str(a), str(b), str(c or "")) for a, b, c in rows]
        time.sleep(0.5)
