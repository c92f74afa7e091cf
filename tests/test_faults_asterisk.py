"""The fault table's rows that need the real Asterisk (bench/faults_asterisk.py) as tests: the
service killed mid-call on another address than Asterisk, the network to it cut mid-call (no FIN),
Asterisk restarted mid-call, the
recordings disk full, SIGTERM mid-call; each through a SIPp caller and `phoneagent serve --ari`
as its own process, checked on what the caller got and what the records say."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.faults_asterisk import ROWS
from devtools import testbed
from models import catalog
from models.base import STT
from models.whisper import WhisperSTT

pytestmark = pytest.mark.asterisk


@pytest.fixture(scope="module")
def ear() -> Iterator[STT]:
    yield WhisperSTT(catalog.whisper_tiny_en(), device="cpu")  # the caller's ear, not the agent's


@pytest.mark.parametrize("row", [
    "service-killed", "asterisk-restart", "sigterm-mid-call",
    pytest.param("network-partition", marks=pytest.mark.skipif(os.geteuid() != 0, reason="nftables rules need root")),
    pytest.param("recordings-disk-full", marks=pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")),
])
async def test_fault_row(asterisk_bed: testbed.AsteriskBed, ear: STT, tmp_path: Path, row: str) -> None:
    r = await ROWS[row](ear, tmp_path)
    failed = [name for name, ok in r.checks.items() if not ok]
    assert r.ok, f"{row}: failed {failed}; heard {r.heard!r}; record {r.outcome}/{r.end_reason}, events {r.events}, {r.extra}"
