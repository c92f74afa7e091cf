"""A short soak (bench/soak.py): two SIP callers placing calls back to back for 45 s through
Asterisk into `phoneagent serve --ari` (its own process, real engines), each call with a
question, a barge-in, DTMF and a goodbye. Nothing may leak; the long run is
`python -m bench.soak --calls 20 --minutes 10`, results in bench/results/."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.soak import soak
from devtools import testbed

pytestmark = pytest.mark.asterisk


async def test_a_short_soak_answers_every_call_and_leaks_nothing(asterisk_bed: testbed.AsteriskBed, tmp_path: Path) -> None:
    r = await soak(2, 0.75, tmp_path)
    assert r["calls_placed"] >= 4 and not r["sip_failures"], r["sip_failures"]
    assert r["records"] == r["calls_placed"], (r["records"], r["calls_placed"])
    assert not r["records_unfinished"] and not r["records_without_turns"], r
    assert r["ari_leftovers"] == {"channels": 0, "bridges": 0}
    assert r["close_wait_at_end"] == 0 and r["service_exit_code"] == 0
    assert sum(p["n"] or 0 for p in r["v2v_ms_per_minute"].values()) >= r["calls_placed"]  # every call was answered
