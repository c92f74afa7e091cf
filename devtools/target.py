"""Throwaway provisioning targets for the ansible converge tests: a fresh Debian 12 or Ubuntu 24.04 root.

A `debootstrap --variant=minbase` tree with what a bare server of that release has and ansible
needs (python3, systemd, nftables, logrotate), built once into the cache (about a minute, needs
the release's mirror) and copied for each test, so every converge starts from the same fresh
host. The playbook reaches it with the chroot connection plugin. No init runs in a chroot:
services are installed and enabled, not started (the test starts the service's own command line
instead). Debian 12 roots come from the host's Debian mirror; Ubuntu 24.04 from the Ubuntu
archive (PHONEAGENT_UBUNTU_MIRROR overrides), checked against the Ubuntu archive keyring taken
from the archive's own ubuntu-keyring package, pinned by its sha256 (a Debian host has no
Ubuntu keys, and debootstrap 1.0.128 names noble only through its generic Ubuntu script).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from devtools import testbed

log = logging.getLogger(__name__)

MARKER = ".phoneagent-target"


@dataclass(frozen=True)
class Release:
    """A distribution release the playbook supports, as debootstrap builds a fresh host of it."""

    suite: str
    name: str  # as README and the roles' messages say it
    packages: tuple[str, ...]  # what a bare server of it has that the playbook relies on
    ubuntu: bool = False
    # apt sources of an installed (not debootstrapped) host: the bundle resolves packages against them
    pockets: tuple[str, ...] = ()


RELEASES = {
    "bookworm": Release("bookworm", "Debian 12", ("python3", "python3-venv", "systemd", "nftables", "logrotate",
                                                  "ca-certificates", "procps")),
    # Ubuntu Server has no python3-venv (ensurepip): the bundle carries it.
    "noble": Release("noble", "Ubuntu 24.04", ("python3", "systemd", "nftables", "logrotate", "ca-certificates", "procps"),
                     ubuntu=True, pockets=("noble", "noble-updates", "noble-security")),
}
UBUNTU_KEYRING_DEB = "pool/main/u/ubuntu-keyring/ubuntu-keyring_2023.11.28.1_all.deb"
UBUNTU_KEYRING_SHA256 = "36de43b15853ccae0028e9a767613770c704833f82586f28eb262f0311adb8a8"
UBUNTU_SCRIPT = "/usr/share/debootstrap/scripts/gutsy"  # debootstrap's script for every Ubuntu release


def ubuntu_mirror() -> str:
    return os.environ.get("PHONEAGENT_UBUNTU_MIRROR") or "http://archive.ubuntu.com/ubuntu"


def release(suite: str) -> Release:
    try:
        return RELEASES[suite]
    except KeyError:
        raise testbed.TestBedError(f"no provisioning target for {suite!r}: one of {', '.join(RELEASES)}") from None


def ubuntu_keyring() -> Path:
    """The Ubuntu archive keyring, from the archive's ubuntu-keyring package (sha256 pinned), cached."""
    dest = testbed.cache_dir() / "ubuntu-archive-keyring.gpg"
    if dest.is_file():
        return dest
    url = f"{ubuntu_mirror()}/{UBUNTU_KEYRING_DEB}"
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a pinned checksum follows)
        deb = response.read()
    if hashlib.sha256(deb).hexdigest() != UBUNTU_KEYRING_SHA256:
        raise testbed.TestBedError(f"{url} does not match its pinned sha256: not using it as the Ubuntu keyring")
    work = dest.with_suffix(".tmp")
    testbed._remove_tree(work)
    work.mkdir(parents=True)
    (work / "keyring.deb").write_bytes(deb)
    subprocess.run(["dpkg-deb", "-x", str(work / "keyring.deb"), str(work / "x")], check=True, timeout=60)
    (work / "x/usr/share/keyrings/ubuntu-archive-keyring.gpg").rename(dest)
    testbed._remove_tree(work)
    return dest


def sources_list(rel: Release) -> str:
    """/etc/apt/sources.list of an installed host of `rel` (what a fresh install writes)."""
    if not rel.ubuntu:
        return ""
    return "".join(f"deb {ubuntu_mirror()} {pocket} main universe\n" for pocket in rel.pockets)


def base_root(suite: str = "bookworm") -> Path:
    return testbed.cache_dir() / f"target-{suite}"


def _ok(root: Path) -> bool:
    return (root / MARKER).is_file() and (root / "usr/bin/python3").exists()


def ensure_base(force: bool = False, suite: str = "bookworm") -> Path:
    """The cached fresh root of `suite`, built when missing or broken (root only)."""
    rel = release(suite)
    root = base_root(suite)
    if _ok(root) and not force:
        return root
    if os.geteuid() != 0:
        raise testbed.TestBedError("building a provisioning target needs root (debootstrap)")
    t0 = time.monotonic()
    tmp = testbed.debootstrap(root, suite, rel.packages, "usr/bin/python3", f"a fresh {rel.name} root",
                              mirror=ubuntu_mirror() if rel.ubuntu else "", script=UBUNTU_SCRIPT if rel.ubuntu else "",
                              keyring=ubuntu_keyring() if rel.ubuntu else None)
    (tmp / "etc/hostname").write_text("target\n")
    if rel.ubuntu:
        (tmp / "etc/apt/sources.list").write_text(sources_list(rel))
    (tmp / MARKER).write_text(f"{suite}\n")
    testbed._remove_tree(root)
    tmp.rename(root)
    log.info("built %s in %.1f s, %s MB", root, time.monotonic() - t0, testbed.disk_usage_mb(root))
    return root


def copy_base(dest: Path, suite: str = "bookworm") -> Path:
    """`dest`: a copy of the fresh root of `suite` (built first when missing), replacing what was there."""
    base = ensure_base(suite=suite)
    testbed._remove_tree(dest)
    subprocess.run(["cp", "-a", "--reflink=auto", str(base), str(dest)], check=True, timeout=600)
    return dest


@contextlib.contextmanager
def fresh_target(dest: Path, suite: str = "bookworm") -> Iterator[Path]:
    """A copy of the fresh root of `suite` at `dest` with /proc and /dev mounted (the engines
    read /proc/cpuinfo; python's multiprocessing needs /dev/shm), torn down safely afterwards."""
    copy_base(dest, suite)
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
