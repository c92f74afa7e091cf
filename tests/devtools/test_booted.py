"""When the systemd converge needs cgroup mounts of its own (devtools/booted.py), from /proc/mounts."""

from __future__ import annotations

import pytest

from devtools.booted import cgroup_mounts_needed

V1 = "".join(f"cgroup /sys/fs/cgroup/{c} cgroup rw,relatime,{c} 0 0\n" for c in ("cpu", "memory", "pids"))
TMPFS = "tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0\n"
NAMED = "cgroup /sys/fs/cgroup/systemd cgroup rw,relatime,name=systemd 0 0\n"
UNIFIED = "cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0\n"


@pytest.mark.parametrize(("mounts", "needed"), [
    (TMPFS + V1, True),  # controllers only (a sandbox supervisor's layout): nothing systemd can use
    (TMPFS + V1 + UNIFIED, True),  # hybrid needs the name=systemd hierarchy too
    (TMPFS + V1 + NAMED + UNIFIED, False),  # hybrid (this dev box, 2026-12-04)
    (TMPFS + V1 + NAMED, False),  # legacy
    ("cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime 0 0\n", False),  # unified (a systemd host)
    ("cgroup /elsewhere cgroup rw,name=systemd 0 0\n" + TMPFS + V1, True),  # not where systemd-nspawn looks
    ("", True),
])
def test_cgroup_mounts_needed(mounts: str, needed: bool) -> None:
    assert cgroup_mounts_needed(mounts) is needed
