"""The database goes away under live calls and comes back: every write is kept on disk and
replayed in order, nothing is lost (a real PostgreSQL, stopped and started for real)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.exc import OperationalError

from db import AsyncCallStore, CallStore, TurnTimings
from db.spool import Spool
from db.store import SPOOLED_INDEX
from devtools.postgres import Postgres

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


@pytest.fixture
def server() -> Iterator[Postgres]:
    """Its own server: the tests stop it, which must not disturb the shared one."""
    with Postgres() as pg:
        yield pg


async def test_database_down_mid_call_then_back_nothing_lost_and_in_order(server: Postgres, tmp_path: Path) -> None:
    url, spool = server.create_database(), tmp_path / "spool.jsonl"
    call = str(uuid.uuid4())
    async with AsyncCallStore(CallStore(url, spool=spool)) as store:
        await store.start_call(call, direction="inbound", caller="+15550100", agent="support", started_at=T0, callee="200")
        assert await store.add_turn(call, "caller", "Is my order late?", timings=TurnTimings(endpoint_ms=900.0)) == 0
        server.stop()  # the database host goes away mid-call
        assert await store.add_turn(call, "agent", "Let me check.", full_text="Let me check that for you.",
                                    interrupted=True) == SPOOLED_INDEX
        await store.add_event(call, 2500.0, "barge_in", {"heard": "Let me check."})
        await store.add_turn(call, "caller", "Order 4 4 7 1.")
        await store.finish_call(call, ended_at=T0 + timedelta(seconds=30), end_reason="caller_hangup", outcome="completed")
        assert store.spool_pending == 4
        with pytest.raises(OperationalError):
            await store.get_call(call)  # reads need the database; only writes are spooled
        assert await store.replay_spool() == 4  # still down: nothing applied, nothing dropped
        server.start()
        assert await store.replay_spool() == 0
        view = await store.get_call(call)
    assert view is not None and not spool.exists()
    assert [(t.index, t.role, t.text) for t in view.turns] == [
        (0, "caller", "Is my order late?"), (1, "agent", "Let me check."), (2, "caller", "Order 4 4 7 1.")]
    assert view.turns[1].interrupted and view.turns[1].full_text == "Let me check that for you."
    assert [(e.kind, e.detail) for e in view.events] == [("barge_in", {"heard": "Let me check."})]
    assert view.end_reason == "caller_hangup" and view.ended_at == T0 + timedelta(seconds=30) and view.callee == "200"


async def test_writes_while_the_spool_is_pending_queue_behind_it(server: Postgres, tmp_path: Path) -> None:
    """The database is back, but the first write after it must not overtake the spooled ones:
    it replays them first, so the turn order is the order they were said."""
    url, spool = server.create_database(), tmp_path / "spool.jsonl"
    call = str(uuid.uuid4())
    with CallStore(url, spool=spool) as store:
        store.start_call(call, direction="inbound", caller=None, agent="support", started_at=T0)
        server.stop()
        store.add_turn(call, "caller", "first")
        store.add_turn(call, "agent", "second")
        server.start()
        assert store.add_turn(call, "caller", "third") == 2  # replayed 0 and 1, then wrote itself
        view = store.get_call(call)
    assert view is not None and [t.text for t in view.turns] == ["first", "second", "third"]


async def test_the_spool_survives_a_restart_and_is_replayed_before_open_calls_are_closed(server: Postgres, tmp_path: Path) -> None:
    """The service stopped while the database was down: the next start replays the spool, so a
    call whose end was spooled is finished as it ended, not closed as interrupted."""
    url, spool = server.create_database(), tmp_path / "spool.jsonl"
    ended, open_call = str(uuid.uuid4()), str(uuid.uuid4())
    with CallStore(url, spool=spool) as store:
        for call in (ended, open_call):
            store.start_call(call, direction="inbound", caller=None, agent="support", started_at=T0)
        server.stop()
        store.add_turn(ended, "caller", "Thanks, bye.")
        store.finish_call(ended, end_reason="caller_hangup", outcome="completed")
    assert Spool(spool).pending == 2
    server.start()
    with CallStore(url, spool=spool) as restarted:
        assert restarted.close_open_calls() == [open_call]
        done = restarted.get_call(ended)
        assert done is not None and done.outcome == "completed" and [t.text for t in done.turns] == ["Thanks, bye."]


def test_an_entry_the_database_refuses_is_set_aside_not_lost_and_does_not_block_the_rest(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    call = str(uuid.uuid4())
    with CallStore(f"sqlite:///{tmp_path}/calls.db", spool=spool) as store:
        store.start_call(call, direction="inbound", caller=None, agent="support", started_at=T0)
        store.add_turn(call, "caller", "zero", index=0)
        log = Spool(spool)
        log.append("add_turn", (call, "caller", "clashes"), {"index": 0})  # index 0 is taken
        log.append("add_turn", (call, "agent", "one"), {"index": 1})
        assert store.replay_spool() == 0
        view = store.get_call(call)
    assert view is not None and [t.text for t in view.turns] == ["zero", "one"]
    rejected = [json.loads(line) for line in log.rejected.read_text().splitlines()]
    assert len(rejected) == 1 and "already has a turn with index 0" in rejected[0]["error"]
    assert json.loads(rejected[0]["entry"])["args"][2] == "clashes"


def test_bad_input_is_refused_at_once_and_never_spooled(tmp_path: Path) -> None:
    spool = tmp_path / "spool.jsonl"
    with CallStore("postgresql+psycopg://nobody@127.0.0.1:1/none", spool=spool) as store:  # nothing listens on port 1
        with pytest.raises(ValueError, match="role"):
            store.add_turn(str(uuid.uuid4()), "robot", "hi")
        store.add_event(str(uuid.uuid4()), 10.0, "dtmf", {"digit": "5"})  # good input, no database: spooled
    assert Spool(spool).pending == 1


def test_entries_round_trip_through_the_file(tmp_path: Path) -> None:
    log, seen = Spool(tmp_path / "s.jsonl"), []
    args = ("c", "agent", "hi")
    kwargs = {"timings": TurnTimings(first_frame_ms=1.5), "at": T0, "detail": {"nested": [1, {"a": None}]}}
    log.append("add_turn", args, kwargs)
    assert log.replay(lambda m, a, k: seen.append((m, a, k))) == 1
    assert seen == [("add_turn", list(args), kwargs)] and log.pending == 0
