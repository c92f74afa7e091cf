"""Throwaway provisioning targets for the ansible converge test: a fresh Debian 12 root.

A `debootstrap --variant=minbase bookworm` tree with what a bare Debian 12 server has and ansible
needs (python3, systemd, nftables, logrotate), built once into the cache (about a minute, needs
the Debian mirror) and copied for each test, so every converge starts from the same fresh host.
The playbook reaches it with the chroot connection plugin. No init runs in a chroot: services are
installed and enabled, not started (the test starts the service's own command line instead).
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from devtools import testbed

log = logging.getLogger(__name__)

SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "systemd", "nftables", "logrotate", "ca-certificates", "procps")
MARKER = ".phoneagent-target"


def base_root() -> Path:
    return testbed.cache_dir() / f"target-{SUITE}"


def _ok(root: Path) -> bool:
    return (root / MARKER).is_file() and (root / "usr/bin/python3").exists()


def ensure_base(force: bool = False) -> Path:
    """The cached fresh Debian 12 root, built when missing or broken (root only)."""
    root = base_root()
    if _ok(root) and not force:
        return root
    if os.geteuid() != 0:
        raise testbed.TestBedError("building a provisioning target needs root (debootstrap)")
    t0 = time.monotonic()
    tmp = testbed.debootstrap(root, SUITE, PACKAGES, "usr/bin/python3", f"a fresh {SUITE} root")
    (tmp / "etc/hostname").write_text("target\n")
    (tmp / MARKER).write_text(f"{SUITE}\n")
    testbed._remove_tree(root)
    tmp.rename(root)
    log.info("built %s in %.1f s, %s MB", root, time.monotonic() - t0, testbed.disk_usage_mb(root))
    return root


@contextlib.contextmanager
def fresh_target(dest: Path) -> Iterator[Path]:
    """A copy of the fresh root at `dest` with /proc and /dev mounted (the engines read
    /proc/cpuinfo; python's multiprocessing needs /dev/shm), torn down safely afterwards."""
    base = ensure_base()
    testbed._remove_tree(dest)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(dest)], check=True, timeout=600)
    mounts = [(["mount", "-t", "proc", "proc", str(dest / "proc")], dest / "proc"),
              (["mount", "--bind", "/dev", str(dest / "dev")], dest / "dev"),
              (["mount", "-t", "tmpfs", "tmpfs", str(dest / "dev/shm")], dest / "dev/shm")]
    done: list[Path] = []
    try:
        for argv, point in mounts:
            subprocess.run(argv, check=True, timeout=30)
            done.append(point)
        yield dest
    finally:
        for point in reversed(done):
            if subprocess.run(["umount", str(point)], check=False, timeout=30).returncode != 0:
                subprocess.run(["umount", "-l", str(point)], check=False, timeout=30)
        testbed._remove_tree(dest)  # refuses while anything is still mounted (never through /dev)
