"""A peer that vanishes without a FIN or RST (its host lost, the link cut) ends the call within
the server's peer timeout (TCP_USER_TIMEOUT), not after minutes of retransmits; with the timeout
off the same cut leaves the session open. Runs tests/audiosocket/vanish_probe.py in a throwaway
network namespace (devtools/netns.py), where an nftables rule drops the connection's packets."""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools.netns import NetNs

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("nft") or not shutil.which("unshare"),
                                reason="a network namespace and nftables need root, nft and unshare")


@pytest.fixture
def ns() -> Iterator[NetNs]:
    made = NetNs()
    try:
        yield made
    finally:
        made.close()


def run_probe(ns: NetNs, peer_timeout: float, wait: float) -> dict[str, object]:
    done = ns.run("env", f"PYTHONPATH={ROOT}", sys.executable, str(Path(__file__).with_name("vanish_probe.py")),
                  "--peer-timeout", str(peer_timeout), "--wait", str(wait), timeout=wait + 30)
    result: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_vanished_peer_ends_the_call_as_connection_lost_within_the_peer_timeout(ns: NetNs) -> None:
    got = run_probe(ns, peer_timeout=1.0, wait=10.0)
    assert got["reason"] == "connection_lost", got
    after = got["after_s"]
    assert isinstance(after, float) and 0.9 <= after < 10.0, got  # not before the timeout; long before the kernel's ~15 min


def test_without_the_peer_timeout_the_same_cut_leaves_the_call_open(ns: NetNs) -> None:
    got = run_probe(ns, peer_timeout=0.0, wait=4.0)
    assert got["reason"] is None and got["sessions_open"] == 1, got
