"""Rows of the fault table (bench/faults.py) as tests: a fault injected around the real engines
or on the AudioSocket wire of a call, checked on what the caller heard (whisper over the
agent's audio at the caller's side) and on the call's record. The table's other rows (LLM
raising/hanging, 50 barge-ins) are tested through Asterisk (tests/dialog/test_dialog_flows_asterisk.py)
and on virtual time (tests/dialog/test_dialog_virtual.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from bench.faults import run_rows
from models.engines import EngineConfig, Engines


@pytest.fixture(scope="module")
def engines() -> Iterator[Engines]:
    yield Engines.load(EngineConfig())


@pytest.mark.parametrize("row", ["stt-hangs", "tts-raises", "tts-raises-from-start", "audiosocket-reset", "trickling-peer",
                                 "dtmf-flood-2000"])
async def test_fault_row(engines: Engines, row: str) -> None:
    [r] = await run_rows([row], engines)
    failed = [name for name, ok in r.checks.items() if not ok]
    assert r.ok, f"{row}: failed {failed}; heard {r.heard!r}; record {r.outcome}/{r.end_reason}, events {r.events}, {r.extra}"
