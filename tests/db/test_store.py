"""CallStore / AsyncCallStore against real SQLite (files in tmp_path, and ':memory:')."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from db import AsyncCallStore, CallStore, CallView, EventView, TurnTimings, TurnView
from db import store as store_module

T0 = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


class FakeClock:
    """Stands in for the wall clock: returns ``now``, which a test moves by hand."""

    def __init__(self, now: datetime = T0) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def cid(n: int = 0) -> str:
    return str(uuid.UUID(int=n + 1))


def url(path: Path) -> str:
    return f"sqlite:///{path}"


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "calls.db"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(db_path: Path, clock: FakeClock) -> Iterator[CallStore]:
    with CallStore(url(db_path), clock=clock, host="agent-1") as s:
        yield s


def count(path: Path, table: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute(f"SELECT count(*) FROM {table}").fetchone()[0])
    finally:
        con.close()


def start(s: CallStore, n: int = 0, at: datetime = T0, **kw: Any) -> str:
    kw.setdefault("caller", "+4930123456")
    s.start_call(cid(n), direction="inbound", agent="front-desk", started_at=at, **kw)
    return cid(n)


# --- round trips ---------------------------------------------------------------------------


def test_full_life_cycle_round_trip(store: CallStore, clock: FakeClock) -> None:
    c = start(store, media="slin16/20ms", metadata={"did": "+4930999", "tags": ["vip", 1]})
    store.mark_answered(c, T0 + timedelta(milliseconds=420))
    caller = TurnTimings(speech_end_ms=2310.5, endpoint_ms=2510.0, stt_done_ms=2702.25)
    agent = TurnTimings(llm_first_token_ms=2950.0, tts_first_audio_ms=3101.5,
                        first_frame_ms=3120.0, barge_in_ms=4500.0)
    assert store.add_turn(c, "caller", "Can I move my appointment?", timings=caller,
                          stt_confidence=0.93) == 0
    clock.now = T0 + timedelta(seconds=5)
    assert store.add_turn(c, "agent", "Of course, which", interrupted=True, timings=agent) == 1
    store.add_event(c, 4500.0, "barge_in", {"heard_chars": 16})
    store.add_event(c, 1200.0, "dtmf", {"digit": "5"})
    store.add_event(c, 9000.0, "reprompt")
    store.set_recording(c, "/var/spool/asterisk/recording/x.wav", 12.5)
    store.finish_call(c, ended_at=T0 + timedelta(seconds=13), end_reason="caller_hangup",
                      outcome="resolved", summary="Moved the appointment to Friday.")

    assert store.get_call(c) == CallView(
        id=c, direction="inbound", caller="+4930123456", agent="front-desk", started_at=T0,
        answered_at=T0 + timedelta(milliseconds=420), ended_at=T0 + timedelta(seconds=13),
        end_reason="caller_hangup", outcome="resolved", media="slin16/20ms",
        recording_path="/var/spool/asterisk/recording/x.wav", recording_s=12.5,
        summary="Moved the appointment to Friday.",
        metadata={"did": "+4930999", "tags": ["vip", 1]},
        turns=(
            TurnView(0, "caller", "Can I move my appointment?", False, caller, 0.93, T0),
            TurnView(1, "agent", "Of course, which", True, agent, None,
                     T0 + timedelta(seconds=5)),
        ),
        events=(
            EventView(1200.0, "dtmf", {"digit": "5"}),
            EventView(4500.0, "barge_in", {"heard_chars": 16}),
            EventView(9000.0, "reprompt", None),
        ),
        host="agent-1",
    )


def test_turns_are_ordered_by_index_and_auto_index_follows_the_highest(store: CallStore) -> None:
    c = start(store)
    for i in (2, 0, 1):
        assert store.add_turn(c, "caller", f"turn {i}", index=i) == i
    assert store.add_turn(c, "agent", "next") == 3
    view = store.get_call(c)
    assert view is not None
    assert [(t.index, t.text) for t in view.turns] == [
        (0, "turn 0"), (1, "turn 1"), (2, "turn 2"), (3, "next")
    ]
    with pytest.raises(ValueError, match="already has a turn with index 2"):
        store.add_turn(c, "caller", "again", index=2)


def test_indices_are_per_call(store: CallStore) -> None:
    a, b = start(store, 0), start(store, 1)
    assert [store.add_turn(a, "caller", "x") for _ in range(3)] == [0, 1, 2]
    assert store.add_turn(b, "caller", "y") == 0


def test_read_back_datetimes_are_utc_aware(store: CallStore) -> None:
    berlin = timezone(timedelta(hours=2))
    c = start(store, at=datetime(2025, 6, 1, 12, 0, tzinfo=berlin))
    store.finish_call(c, ended_at=datetime(2025, 6, 1, 12, 1, tzinfo=berlin), end_reason="done")
    view = store.get_call(c)
    assert view is not None
    assert view.started_at == datetime(2025, 6, 1, 10, 0, tzinfo=UTC)
    for value in (view.started_at, view.ended_at):
        assert value is not None and value.tzinfo is UTC


def test_data_survives_reopening_the_file(db_path: Path, clock: FakeClock) -> None:
    with CallStore(url(db_path), clock=clock) as first:
        c = start(first)
        first.add_turn(c, "caller", "hello", timings=TurnTimings(endpoint_ms=800.0))
        first.add_event(c, 10.0, "engine_error", {"engine": "stt"})
        before = first.get_call(c)
    with CallStore(url(db_path), clock=clock) as second:
        assert second.get_call(c) == before
        assert before is not None and len(before.turns) == 1


def test_sqlite_file_is_in_wal_mode(store: CallStore, db_path: Path) -> None:
    start(store)
    con = sqlite3.connect(db_path)
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    finally:
        con.close()


def test_in_memory_store(clock: FakeClock) -> None:
    with CallStore("sqlite:///:memory:", clock=clock) as s:
        c = start(s)
        s.add_turn(c, "system", "prompt v3")
        view = s.get_call(c)
        assert view is not None and view.turns[0].role == "system"
        assert s.get_call(cid(99)) is None


def test_list_calls_newest_first_with_limit_and_since(store: CallStore) -> None:
    for n in range(5):
        start(store, n, at=T0 + timedelta(minutes=n))
        store.add_turn(cid(n), "caller", "hi")
    assert [v.id for v in store.list_calls()] == [cid(n) for n in (4, 3, 2, 1, 0)]
    assert [v.id for v in store.list_calls(limit=2)] == [cid(4), cid(3)]
    assert [v.id for v in store.list_calls(since=T0 + timedelta(minutes=3))] == [cid(4), cid(3)]
    assert all(v.turns == () and v.events == () for v in store.list_calls())


# --- deletes -------------------------------------------------------------------------------


def test_delete_cascades_to_turns_and_events(store: CallStore, db_path: Path) -> None:
    keep, drop = start(store, 0), start(store, 1)
    for c in (keep, drop):
        store.add_turn(c, "caller", "x")
        store.add_event(c, 5.0, "fallback")
    assert store.delete_call(drop) is True
    assert store.delete_call(drop) is False
    assert store.get_call(drop) is None
    assert (count(db_path, "turns"), count(db_path, "events")) == (1, 1)
    assert store.get_call(keep) is not None


# --- a call record is never lost -------------------------------------------------------------


def test_finish_on_unknown_call_creates_a_minimal_record(
    store: CallStore, caplog: pytest.LogCaptureFixture
) -> None:
    ended = T0 + timedelta(seconds=30)
    with caplog.at_level(logging.WARNING, logger="db.store"):
        store.finish_call(cid(7), ended_at=ended, end_reason="crash_recovery", outcome="error")
    assert "finish_call for unknown call" in caplog.text
    view = store.get_call(cid(7))
    assert view is not None
    assert (view.direction, view.agent, view.started_at) == ("unknown", "unknown", ended)
    assert (view.ended_at, view.end_reason, view.outcome) == (ended, "crash_recovery", "error")


@pytest.mark.parametrize("write", ["turn", "event", "answered", "recording"])
def test_writes_for_an_unknown_call_create_the_call_first(
    store: CallStore, clock: FakeClock, write: str
) -> None:
    c = cid(3)
    if write == "turn":
        store.add_turn(c, "caller", "early")
    elif write == "event":
        store.add_event(c, 1.0, "dtmf", {"digit": "1"})
    elif write == "answered":
        store.mark_answered(c, T0)
    else:
        store.set_recording(c, "/tmp/r.wav", 1.0)
    view = store.get_call(c)
    assert view is not None and view.direction == "unknown" and view.started_at == clock.now
    # The real start that arrives later fills the placeholder in, keeping what was written.
    start(store, 3, at=T0 - timedelta(seconds=1), media="slin16/20ms")
    view = store.get_call(c)
    assert view is not None
    assert (view.direction, view.agent, view.media) == ("inbound", "front-desk", "slin16/20ms")
    assert len(view.turns) + len(view.events) == (1 if write in ("turn", "event") else 0)


def test_starting_a_call_twice_is_an_error(store: CallStore) -> None:
    start(store)
    with pytest.raises(ValueError, match="already started"):
        start(store)


def test_finish_without_outcome_keeps_the_stored_one(store: CallStore) -> None:
    c = start(store, caller="  ")
    store.finish_call(c, ended_at=T0, end_reason="transfer", outcome="transferred", summary="s")
    store.finish_call(c, ended_at=T0 + timedelta(seconds=1), end_reason="hangup")
    view = store.get_call(c)
    assert view is not None
    assert (view.caller, view.end_reason, view.outcome, view.summary) == (
        None, "hangup", "transferred", "s"
    )


def test_writes_retry_while_the_database_is_locked(
    db_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_MS", 0)  # fail fast: exercise our retry
    with CallStore(url(db_path), clock=clock) as s:
        c = start(s)
        blocker = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
        blocker.execute("BEGIN IMMEDIATE")  # holds the write lock
        timer = threading.Timer(0.2, blocker.execute, ("COMMIT",))
        timer.start()
        try:
            with caplog.at_level(logging.WARNING, logger="db.store"):
                assert s.add_turn(c, "caller", "after the lock") == 0
        finally:
            timer.join()
            blocker.close()
        assert "database is locked; retry 1/" in caplog.text


# --- validation happens before the database is touched ---------------------------------------

NAIVE = datetime(2025, 1, 1, 12, 0)

BAD_CALLS: dict[str, Any] = {
    "role": lambda s: s.add_turn(cid(), "customer", "hi"),
    "negative index": lambda s: s.add_turn(cid(), "caller", "hi", index=-1),
    "bool index": lambda s: s.add_turn(cid(), "caller", "hi", index=True),
    "interrupted": lambda s: s.add_turn(cid(), "agent", "hi", interrupted=1),
    "NaN timing": lambda s: s.add_turn(cid(), "caller", "x",
                                       timings=TurnTimings(endpoint_ms=float("nan"))),
    "negative timing": lambda s: s.add_turn(cid(), "caller", "x",
                                            timings=TurnTimings(stt_done_ms=-1.0)),
    "timings type": lambda s: s.add_turn(cid(), "caller", "x", timings={"endpoint_ms": 1.0}),
    "text type": lambda s: s.add_turn(cid(), "caller", None),
    "call id": lambda s: s.add_turn("not-a-uuid", "caller", "hi"),
    "direction": lambda s: s.start_call(cid(), direction="sideways", caller=None, agent="a",
                                        started_at=T0),
    "naive start": lambda s: s.start_call(cid(), direction="inbound", caller=None, agent="a",
                                          started_at=NAIVE),
    "empty agent": lambda s: s.start_call(cid(), direction="inbound", caller=None, agent="",
                                          started_at=T0),
    "metadata": lambda s: s.start_call(cid(), direction="inbound", caller=None, agent="a",
                                       started_at=T0, metadata={"x": object()}),
    "naive answer": lambda s: s.mark_answered(cid(), NAIVE),
    "naive end": lambda s: s.finish_call(cid(), ended_at=NAIVE, end_reason="hangup"),
    "end reason": lambda s: s.finish_call(cid(), ended_at=T0, end_reason=""),
    "negative t_ms": lambda s: s.add_event(cid(), -5.0, "dtmf"),
    "event kind": lambda s: s.add_event(cid(), 5.0, ""),
    "detail": lambda s: s.add_event(cid(), 5.0, "x", detail=["not", "a", "dict"]),
    "recording": lambda s: s.set_recording(cid(), "/r.wav", float("inf")),
    "limit": lambda s: s.list_calls(limit=0),
    "naive since": lambda s: s.list_calls(since=NAIVE),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_input_raises_before_touching_the_database(db_path: Path, case: str) -> None:
    with CallStore(url(db_path)) as s:
        with pytest.raises(ValueError):
            BAD_CALLS[case](s)
    assert not db_path.exists()  # no connection was ever opened


def test_error_messages_name_the_problem(store: CallStore) -> None:
    with pytest.raises(ValueError, match=r"role 'customer' is not one of \['agent', 'caller'"):
        store.add_turn(cid(), "customer", "hi")
    with pytest.raises(ValueError, match="naive"):
        store.mark_answered(cid(), NAIVE)


# --- AsyncCallStore ----------------------------------------------------------------------------


async def test_twenty_concurrent_tasks_write_all_their_rows(db_path: Path) -> None:
    threads: set[str] = set()

    def clock() -> datetime:
        threads.add(threading.current_thread().name)
        return T0

    async def one_call(n: int, store: AsyncCallStore) -> None:
        await store.start_call(cid(n), direction="outbound", caller=None, agent="dialer",
                               started_at=T0 + timedelta(seconds=n))
        for i in range(10):
            role = "caller" if i % 2 == 0 else "agent"
            assert await store.add_turn(cid(n), role, f"{n}:{i}") == i
            await asyncio.sleep(0)
        await store.add_event(cid(n), 1.0, "done")
        await store.finish_call(cid(n), ended_at=T0 + timedelta(minutes=1), end_reason="hangup")

    async with AsyncCallStore(CallStore(url(db_path), clock=clock)) as store:
        await asyncio.gather(*(one_call(n, store) for n in range(20)))
        views = [await store.get_call(cid(n)) for n in range(20)]
        assert len(await store.list_calls(limit=100)) == 20

    assert threads == {"callstore_0"}  # one dedicated worker, never the event loop's thread
    assert (count(db_path, "calls"), count(db_path, "turns"), count(db_path, "events")) == (
        20, 200, 20
    )
    for n, view in enumerate(views):
        assert view is not None and view.ended_at is not None
        assert [t.text for t in view.turns] == [f"{n}:{i}" for i in range(10)]


async def test_async_in_memory_and_errors_come_back_to_the_caller() -> None:
    store = AsyncCallStore("sqlite:///:memory:")
    await store.start_call(cid(), direction="inbound", caller=None, agent="a", started_at=T0)
    with pytest.raises(ValueError, match="role"):
        await store.add_turn(cid(), "robot", "beep")
    assert await store.add_turn(cid(), "agent", "beep") == 0
    assert await store.delete_call(cid()) is True
    await store.aclose()
    await store.aclose()  # idempotent
    with pytest.raises(RuntimeError, match="closed"):
        await store.get_call(cid())


async def test_a_cancelled_caller_does_not_drop_its_write(
    db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    release = threading.Event()

    def slow_clock() -> datetime:
        release.wait(5)  # hold the worker so the writes are still pending when we cancel
        return T0

    store = AsyncCallStore(CallStore(url(db_path), clock=slow_clock))
    kept = asyncio.create_task(store.add_turn(cid(), "caller", "kept"))
    clash = asyncio.create_task(store.add_turn(cid(), "caller", "same index", index=0))
    await asyncio.sleep(0.05)
    for task in (kept, clash):
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    release.set()
    with caplog.at_level(logging.ERROR, logger="db.store"):
        await store.aclose()  # drains the queue
    assert "write failed after its caller was cancelled" in caplog.text
    with CallStore(url(db_path)) as check:
        view = check.get_call(cid())
    assert view is not None and [t.text for t in view.turns] == ["kept"]


def test_start_and_finish_default_to_the_stores_clock(store: CallStore, clock: FakeClock) -> None:
    """The dialog never reads a wall clock: the store stamps its calls."""
    clock.now = T0 + timedelta(seconds=5)
    store.start_call(cid(42), direction="inbound", caller=None, agent="a")
    clock.now = T0 + timedelta(seconds=65)
    store.finish_call(cid(42), end_reason="caller_hangup")
    view = store.get_call(cid(42))
    assert view is not None
    assert view.started_at == T0 + timedelta(seconds=5) and view.ended_at == T0 + timedelta(seconds=65)
