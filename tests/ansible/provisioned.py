"""What the converge tests share: their workspace and one-box inventory, a converged target's
units started as systemd would start them (no init runs in a chroot), and what they recorded."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from devtools import kamailio
from devtools.serve import Service
from tests.ansible import bundle_dir, unit_fields

UNIT = "etc/systemd/system/phoneagent.service"
ASTERISK_UNIT = "etc/systemd/system/phoneagent-asterisk.service"
ASTERISK_ROOT = "opt/phoneagent-asterisk"
KAMAILIO_UNIT = "lib/systemd/system/kamailio.service"


def workspace(factory: pytest.TempPathFactory, name: str) -> tuple[Path, Path]:
    """The offline bundle and a fresh directory for one converge; without root the test fails
    (a converge that silently skipped would prove nothing)."""
    if os.geteuid() != 0:
        pytest.fail(f"{name} needs root (debootstrap, chroot, mounts, namespaces)", pytrace=False)
    return bundle_dir(), factory.mktemp(name)


def one_box_inventory(tmp: Path, root: Path) -> Path:
    """An inventory with every group on one chroot host, `target`."""
    inventory = tmp / "hosts.yml"
    host = {"target": {"ansible_connection": "community.general.chroot", "ansible_host": str(root)}}
    inventory.write_text(json.dumps({"all": {"children": {group: {"hosts": host} for group in
                                                          ("phoneagent_asterisk", "phoneagent_agents", "phoneagent_kamailio")}}}))
    return inventory


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
def asterisk_started(root: Path, console: Path, netns: Sequence[str] = ()) -> Iterator[Path]:
    """The installed Asterisk, started as its unit starts it (ExecStartPre, ExecStart; ExecStop
    after); `netns`: an nsenter prefix, the network namespace that plays its host's network."""
    unit = unit_fields(root, ASTERISK_UNIT)
    pre = in_target(root, unit["ExecStartPre"])
    assert pre.returncode == 0, pre.stderr
    with open(console, "w") as out:
        proc = subprocess.Popen([*netns, "chroot", str(root), *shlex.split(unit["ExecStart"])], stdout=out, stderr=subprocess.STDOUT)
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
def service_started(root: Path, http_port: int, log: list[str],
                    netns: Sequence[str] = ()) -> Iterator[tuple[subprocess.Popen[str], Service]]:
    """The service started as its unit starts it (its user, its environment file only), once
    /healthz answers; killed if the test did not stop it. Its output lands in `log`. `netns`:
    an nsenter prefix, the network namespace that plays its host's network."""
    argv, env = unit_command(root)
    # setpriv execs (runuser stays as a parent and dies by the signal itself): the exit status
    # seen here is the service's own, as systemd sees it.
    as_service = ["/usr/bin/setpriv", "--reuid=phoneagent", "--regid=phoneagent", "--init-groups", "--"]
    proc = subprocess.Popen([*netns, "chroot", str(root), *as_service, "/usr/bin/env", "-i", *(f"{k}={v}" for k, v in env.items()), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    service = Service(proc, http_port, tuple(netns))
    try:
        try:
            asyncio.run(service.wait_ready(240))  # the preflight loads each engine first
        except RuntimeError as exc:
            if proc.poll() is None:
                proc.kill()
            log.append(proc.communicate(timeout=30)[0])
            raise AssertionError(f"{exc}; its output:\n{log[-1][-3000:]}") from exc
        yield proc, service
    finally:
        if proc.poll() is None:
            proc.kill()
        if proc.stdout is not None and not proc.stdout.closed:
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


def _kamailio_unit(root: Path) -> list[str]:
    """The packaged kamailio.service's ExecStart with its Environment= values filled in, as systemd would."""
    text = (root / KAMAILIO_UNIT).read_text().splitlines()
    env = dict(shlex.split(line.split("=", 1)[1])[0].split("=", 1) for line in text if line.startswith("Environment="))
    start = next(line.split("=", 1)[1] for line in text if line.startswith("ExecStart="))
    return [env.get(word[1:], word) if word.startswith("$") else word for word in shlex.split(start)]


def _dispatcher(root: Path) -> list[kamailio.Destination]:
    done = subprocess.run(["chroot", str(root), "/usr/sbin/kamcmd", "-s", "unix:/run/kamailio/kamailio_ctl", "dispatcher.list"],
                          capture_output=True, text=True, timeout=30, check=False)
    return kamailio.parse_dispatcher_list(done.stdout) if done.returncode == 0 else []


@contextlib.contextmanager
def kamailio_started(root: Path, expect: Sequence[str], netns: Sequence[str] = ()) -> Iterator[list[kamailio.Destination]]:
    """The installed Kamailio, started as the distribution's unit starts it (as user kamailio,
    forking), once its OPTIONS probes have judged its servers as `expect` says ("A" up, "I" out;
    in any order), or after 30 s; `netns`: an nsenter prefix, its host's network."""
    run = root / "run/kamailio"  # the unit's RuntimeDirectory
    run.mkdir(mode=0o770, exist_ok=True)
    user = next(line.split(":") for line in (root / "etc/passwd").read_text().splitlines() if line.startswith("kamailio:"))
    os.chown(run, int(user[2]), int(user[3]))
    start = subprocess.run([*netns, "chroot", str(root), "/usr/bin/setpriv", "--reuid=kamailio", "--regid=kamailio", "--init-groups", "--",
                            *_kamailio_unit(root)], capture_output=True, text=True, timeout=60, check=False)
    assert start.returncode == 0, start.stdout + start.stderr
    try:
        deadline, found = time.monotonic() + 30, []
        while time.monotonic() < deadline:
            found = _dispatcher(root)
            if sorted(d.flags[:1] for d in found) == sorted(expect):
                break
            time.sleep(0.5)
        yield found
    finally:
        pid = run / "kamailio.pid"
        if pid.is_file():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid.read_text()), signal.SIGTERM)


