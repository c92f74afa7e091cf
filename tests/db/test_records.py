"""Call records from the command line (`phoneagent calls ...`) and the start-up close of calls a
crash left open, on a real SQLite file written through the store's own API."""

from __future__ import annotations

import json
import uuid
import wave
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from db import CallStore
from db.schema import TurnTimings
from phoneagent.cli import main
from phoneagent.records import purge

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def seed(url: str, tmp_path: Path) -> dict[str, str]:
    """Three calls: a transferred one with a recording (yesterday), an old completed one (200
    days ago), and one a crash left open (today)."""
    ids = {k: str(uuid.uuid4()) for k in ("transferred", "old", "open")}
    audio = tmp_path / "rec.wav"
    with wave.open(str(audio), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(bytes(1600))
    with CallStore(url) as store:
        t = ids["transferred"]
        store.start_call(t, direction="inbound", caller="+15551234567", agent="support", started_at=NOW - timedelta(days=1),
                         media="slin16/20ms")
        store.add_turn(t, "agent", "Hello, this is Northwind support.", timings=TurnTimings(first_frame_ms=300.0))
        store.add_turn(t, "caller", "Where is my order four five seven two?", stt_confidence=0.8,
                       timings=TurnTimings(speech_end_ms=4000.0, endpoint_ms=4512.0, stt_done_ms=4700.0))
        store.add_turn(t, "agent", "Order 4 5 7 2 is delayed.", timings=TurnTimings(
            speech_end_ms=4000.0, endpoint_ms=4512.0, stt_done_ms=4700.0, llm_first_token_ms=5900.0, tts_first_audio_ms=6100.0,
            first_frame_ms=6110.0))
        store.add_event(t, 6200.0, "tool_call", {"name": "order_status", "ok": True})
        store.set_recording(t, str(audio), 0.1)
        store.finish_call(t, end_reason="transferred", outcome="transferred", summary="Order 4572 is late; caller wants a person.",
                          ended_at=NOW - timedelta(days=1) + timedelta(seconds=40))
        o = ids["old"]
        store.start_call(o, direction="inbound", caller=None, agent="shipments", started_at=NOW - timedelta(days=200))
        store.add_turn(o, "caller", "What time do you close?")
        store.finish_call(o, end_reason="caller_hangup", outcome="completed", ended_at=NOW - timedelta(days=200) + timedelta(seconds=30))
        store.start_call(ids["open"], direction="inbound", caller="+15550000000", agent="support", started_at=NOW - timedelta(minutes=5))
    return ids


def test_list_filters_and_searches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    ids = seed(url, tmp_path)
    assert main(["calls", "list", "--db", url]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [ids["open"], ids["transferred"], ids["old"]]  # newest first
    assert "open" in lines[0] and "40.0 s" in lines[1] and "transferred" in lines[1]
    assert main(["calls", "list", "--db", url, "--outcome", "transferred", "--since", "2026-11-29"]) == 0
    assert capsys.readouterr().out.split()[0] == ids["transferred"]
    assert main(["calls", "list", "--db", url, "--text", "WHAT TIME"]) == 0  # transcript search, any case
    assert capsys.readouterr().out.split()[0] == ids["old"]
    assert main(["calls", "list", "--db", url, "--text", "100%_"]) == 0  # wildcards are literal
    assert capsys.readouterr().out.strip() == "no calls"
    assert main(["calls", "list", "--db", url, "--since", "yesterday"]) == 2
    assert "'yesterday' is not a date" in capsys.readouterr().err


def test_show_has_the_waterfall_and_the_events(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    ids = seed(url, tmp_path)
    assert main(["calls", "show", ids["transferred"], "--db", url]) == 0
    out = capsys.readouterr().out
    assert "from +15551234567, agent support" in out and "summary for the person who took it: Order 4572 is late" in out
    assert "endpoint 512 ms  stt 188 ms  llm 1200 ms  tts 200 ms  wire 10 ms  v2v 2110 ms" in out  # the slow turn: the LLM
    assert "tool_call" in out and '"order_status"' in out
    assert main(["calls", "show", str(uuid.uuid4()), "--db", url]) == 2
    assert "no call" in capsys.readouterr().err


def test_export_writes_json_and_the_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    ids = seed(url, tmp_path)
    assert main(["calls", "export", ids["transferred"], "--db", url, "--out", str(tmp_path / "out")]) == 0
    written = capsys.readouterr().out.split()
    data = json.loads(Path(written[0]).read_text())
    assert data["id"] == ids["transferred"] and data["outcome"] == "transferred"
    assert data["turns"][2]["waterfall_ms"] == {"endpoint": 512.0, "stt": 188.0, "llm": 1200.0, "tts": 200.0, "wire": 10.0, "v2v": 2110.0}
    assert Path(written[1]).read_bytes() == (tmp_path / "rec.wav").read_bytes()


def test_purge_deletes_old_calls_and_their_recordings(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    ids = seed(url, tmp_path)
    with CallStore(url) as store:
        assert [c.id for c in purge(store, 0.5, now=NOW, dry_run=True)] == [ids["transferred"], ids["old"]]
        assert (tmp_path / "rec.wav").exists()  # a dry run deletes nothing
        assert {c.id for c in purge(store, 0.5, now=NOW)} == {ids["transferred"], ids["old"]}
        assert not (tmp_path / "rec.wav").exists()
        assert [c.id for c in store.list_calls()] == [ids["open"]]
        with pytest.raises(ValueError, match="days > 0"):
            purge(store, 0, now=NOW)


def test_a_callers_calls_are_found_however_the_number_was_written(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    ids = seed(url, tmp_path)  # "+15551234567" (transferred), "+15550000000" (open), anonymous (old)
    with CallStore(url) as store:
        for asked in ("15551234567", "5551234567"):  # a country code more or less is the same number
            assert [c.id for c in store.list_calls(caller_digits=asked)] == [ids["transferred"]], asked
        assert store.list_calls(caller_digits="15559994567") == []  # same last four, another number
        with pytest.raises(ValueError, match="4 or more digits"):
            store.list_calls(caller_digits="+1555")


def test_calls_a_crash_left_open_are_closed_as_interrupted(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/calls.db"
    ids = seed(url, tmp_path)
    with CallStore(url, clock=lambda: NOW) as store:
        assert store.close_open_calls() == [ids["open"]]
        call = store.get_call(ids["open"])
        assert call is not None and (call.end_reason, call.outcome, call.ended_at) == ("interrupted", "interrupted", NOW)
        assert store.get_call(ids["transferred"]).outcome == "transferred"  # type: ignore[union-attr]  # finished calls untouched
        assert store.close_open_calls() == []
