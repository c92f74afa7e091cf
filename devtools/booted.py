"""A provisioning target that boots systemd: a fresh root (devtools/target.py) run by
systemd-nspawn in a network namespace of its own, reached like a remote server.

Why: in a chroot no init runs, so the chroot converge starts the units' command lines itself and
never exercises what only systemd does: the play's own start/restart handlers, the units'
sandboxing (User=, ProtectSystem=strict, MemoryMax=), Restart=on-failure, a graceful stop, and a
box that comes back up on its own after a reboot. Here the container's PID 1 is the target's own
systemd; ansible reaches it with community.docker's nsenter connection plugin (every file the
play installs travels as it would to a remote host), and the tests enter its network namespace
to place calls.

systemd-nspawn needs a cgroup layout systemd can use: cgroup2 at /sys/fs/cgroup, or a name=systemd
v1 hierarchy (legacy; with cgroup2 at /sys/fs/cgroup/unified too, hybrid). A host with only v1
controller mounts gets the hybrid layout's two mounts in a private mount namespace around
systemd-nspawn (`cgroup_mounts_needed`), so the host's own mounts are left alone.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools import testbed


def cgroup_mounts_needed(mounts: str) -> bool:
    """True when /proc/mounts (its text) has neither cgroup2 at /sys/fs/cgroup nor a name=systemd
    v1 hierarchy at /sys/fs/cgroup/systemd (cgroup2 at /sys/fs/cgroup/unified alone is not enough:
    systemd-nspawn's hybrid mode attaches to both)."""
    for line in mounts.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        point, fstype, options = fields[1], fields[2], fields[3].split(",")
        if fstype == "cgroup2" and point == "/sys/fs/cgroup":
            return False
        if fstype == "cgroup" and point == "/sys/fs/cgroup/systemd" and "name=systemd" in options:
            return False
    return True


# Run as `sh -c WITH_HYBRID_CGROUPS sh nspawn-argv...` inside `unshare --mount`: a fresh tmpfs at
# /sys/fs/cgroup (the host's may be read-only) holding the hybrid layout's two hierarchies, then
# systemd-nspawn itself (same PID). The host's controller hierarchies are hidden there: systemd in
# the container does without them.
WITH_HYBRID_CGROUPS = (
    "set -e; mount -t tmpfs -o mode=755 cgroup /sys/fs/cgroup; mkdir /sys/fs/cgroup/unified /sys/fs/cgroup/systemd; "
    "mount -t cgroup2 cgroup2 /sys/fs/cgroup/unified; mount -t cgroup -o none,name=systemd cgroup /sys/fs/cgroup/systemd; "
    "exec \"$@\"")


@dataclass
class BootedHost:
    """A root booted by systemd-nspawn. `leader`: the container's PID 1 as this host sees it."""

    root: Path
    proc: subprocess.Popen[bytes]
    leader: int
    console: Path

    @property
    def enter(self) -> list[str]:
        """A command prefix that runs a program inside the container (its mounts, PIDs, network)."""
        return ["nsenter", f"--target={self.leader}", "--mount", "--pid", "--ipc", "--uts", "--net", "--"]

    @property
    def netns(self) -> list[str]:
        """A prefix that runs a program of this host in the container's network namespace."""
        return ["nsenter", f"--net=/proc/{self.leader}/ns/net", "--"]

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.enter, *argv], capture_output=True, text=True, timeout=timeout, check=False)

    def systemctl_show(self, unit: str, *props: str) -> dict[str, str]:
        done = self.run("systemctl", "show", unit, "-p", ",".join(props))
        return dict(line.split("=", 1) for line in done.stdout.splitlines() if "=" in line)

    def wait_booted(self, timeout_s: float) -> str:
        """Until systemd has finished starting the box: 'running' or 'degraded' (a unit failed)."""
        deadline, state = time.monotonic() + timeout_s, ""
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise testbed.TestBedError(f"systemd-nspawn exited ({self.proc.returncode}): {self.console_tail()}")
            state = self.run("systemctl", "is-system-running", timeout=30).stdout.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.5)
        raise testbed.TestBedError(f"the booted root is still {state!r} after {timeout_s:g} s: {self.console_tail()}")

    def console_tail(self, chars: int = 3000) -> str:
        return self.console.read_text(errors="replace")[-chars:] if self.console.exists() else ""


def _leader(nspawn: subprocess.Popen[bytes], timeout_s: float) -> int:
    """The container's init: the child of systemd-nspawn that is PID 1 in its own PID namespace."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and nspawn.poll() is None:
        children = Path(f"/proc/{nspawn.pid}/task/{nspawn.pid}/children")
        for pid in (children.read_text().split() if children.exists() else ()):
            with contextlib.suppress(OSError):
                ns_pids = next(line.split()[1:] for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("NSpid:"))
                if ns_pids[-1] == "1" and len(ns_pids) > 1:
                    return int(pid)
        time.sleep(0.1)
    raise testbed.TestBedError(f"systemd-nspawn started no container (exit {nspawn.poll()})")


@contextlib.contextmanager
def booted(root: Path, console: Path, timeout_s: float = 180) -> Iterator[BootedHost]:
    """`root` booted with its own systemd until it is up; powered off (systemd stops every unit,
    as on a shutdown) when the block ends. Needs root and systemd-nspawn (systemd-container)."""
    argv = ["systemd-nspawn", "--quiet", "-D", str(root), "--register=no", "--keep-unit", "--private-network",
            "--boot", "--console=read-only"]
    if cgroup_mounts_needed(Path("/proc/mounts").read_text()):
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", WITH_HYBRID_CGROUPS, "sh", *argv]
    with open(console, "wb") as out:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        host = BootedHost(root, proc, _leader(proc, 30), console)
        host.wait_booted(timeout_s)
        yield host
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # systemd-nspawn asks the container's systemd to power off
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
