"""The multi-host bed for tests/cluster: Kamailio, two Asterisk servers and an inference-server
host on a private network (each a network namespace); agent hosts are added by the tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from devtools import cluster


@pytest.fixture
def bed(tmp_path: Path) -> Iterator[cluster.Bed]:
    with cluster.network() as lan:
        for name, octet in (("kamailio", 2), ("asterisk-a", 11), ("asterisk-b", 12), ("llm", 31)):
            lan.add(name, octet)
        made = cluster.Bed(lan, tmp_path)
        try:
            yield made
        finally:
            made.close()
