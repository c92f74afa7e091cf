"""Alembic migrations on SQLite and a real PostgreSQL: a new database is created by them, the
models match what they build, an older database is upgraded with its calls kept."""

from __future__ import annotations

import uuid
from pathlib import Path
from datetime import UTC, datetime

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from db import CallStore, migrate
from db.schema import Base

T0 = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_head_is_the_newest_revision() -> None:
    assert migrate.head() == "0004"


def test_a_new_database_is_built_by_the_migrations_and_matches_the_models(db_url: str) -> None:
    with CallStore(db_url) as store:
        assert store.upgrade_schema() == (None, migrate.head())
        assert store.upgrade_schema() == (migrate.head(), migrate.head())  # idempotent
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
        assert diff == [], diff  # a model change without its migration fails here
    finally:
        engine.dispose()


def _old_database(url: str) -> str:
    """A call log as the previous release left it: revision 0001, one call with two turns."""
    engine = create_engine(url)
    try:
        from alembic import command

        with engine.begin() as conn:
            command.upgrade(migrate.alembic_config(conn), "0001")
        call = str(uuid.uuid4())
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO calls (id, direction, caller, agent, started_at) VALUES (:id, 'inbound', '555', 'support', :t)"),
                         {"id": call, "t": T0.replace(tzinfo=None) if conn.dialect.name == "sqlite" else T0})
            for i, said in enumerate(("Where is my order?", "It left the depot today.")):
                conn.execute(text("INSERT INTO turns (call_id, turn_index, role, text, interrupted, created_at) "
                                  "VALUES (:c, :i, :r, :t, false, :at)"),
                             {"c": call, "i": i, "r": "caller" if i == 0 else "agent", "t": said,
                              "at": T0.replace(tzinfo=None) if conn.dialect.name == "sqlite" else T0})
        return call
    finally:
        engine.dispose()


def test_an_older_database_is_upgraded_at_first_use_and_keeps_its_calls(db_url: str) -> None:
    call = _old_database(db_url)
    with CallStore(db_url) as store:
        view = store.get_call(call)  # the first use upgrades 0001 -> head
        assert view is not None and [t.text for t in view.turns] == ["Where is my order?", "It left the depot today."]
        assert view.callee is None and view.turns[1].full_text is None
        store.finish_call(call, end_reason="caller_hangup", outcome="transferred", transfer_target="PJSIP/200",
                          disposition="the caller asked for a person")
        after = store.get_call(call)
        assert after is not None and after.transfer_target == "PJSIP/200" and len(after.turns) == 2
    engine = create_engine(db_url)
    try:
        assert migrate.current(engine) == migrate.head()
    finally:
        engine.dispose()


def test_a_database_from_before_migrations_is_stamped_not_rebuilt(tmp_path: Path) -> None:
    """Releases before migrations made their tables with create_all and no alembic_version."""
    url = f"sqlite:///{tmp_path}/legacy.db"
    call = _old_database(url)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE alembic_version"))
    try:
        assert migrate.upgrade(engine) == (None, migrate.head())
        with engine.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM turns WHERE call_id = :c"), {"c": call}).scalar() == 2
    finally:
        engine.dispose()


def test_downgrade_to_nothing_and_back(db_url: str) -> None:
    from alembic import command

    with CallStore(db_url) as store:
        store.upgrade_schema()
    engine = create_engine(db_url)
    try:
        with engine.begin() as conn:
            command.downgrade(migrate.alembic_config(conn), "base")
        assert migrate.current(engine) is None
        assert migrate.upgrade(engine) == (None, migrate.head())
    finally:
        engine.dispose()


def test_hosts_sharing_a_database_each_close_only_their_own_calls(db_url: str) -> None:
    """Two agent hosts on one database: the one that restarts after a crash closes its own open
    calls, never the other's live ones; a call from before revision 0003 (no host) was the one
    service's and is closed by whichever host starts first."""
    old = _old_database(db_url)  # an open call written before hosts were recorded
    with CallStore(db_url, host="agent-a") as a, CallStore(db_url, host="agent-b") as b:
        a.start_call("a" * 8 + "-0000-4000-8000-000000000001", direction="inbound", caller="1", agent="support")
        b.start_call("b" * 8 + "-0000-4000-8000-000000000002", direction="inbound", caller="2", agent="support")
        a.add_turn("c" * 8 + "-0000-4000-8000-000000000003", "caller", "a write for a call never started")  # a placeholder row
        closed = a.close_open_calls()
        assert sorted(closed) == sorted([old, "a" * 8 + "-0000-4000-8000-000000000001", "c" * 8 + "-0000-4000-8000-000000000003"])
        live = b.get_call("b" * 8 + "-0000-4000-8000-000000000002")
        assert live is not None and live.ended_at is None and live.host == "agent-b"
        assert b.close_open_calls() == ["b" * 8 + "-0000-4000-8000-000000000002"]
        assert a.get_call(old).host is None  # type: ignore[union-attr]


def test_a_silent_host_s_open_calls_are_finished_by_another(db_url: str) -> None:
    """A host that died and never came back: once it has been silent past the timeout, a live
    host finishes its open calls as interrupted; a host still heard from keeps its calls."""
    from datetime import UTC, datetime, timedelta

    now = [datetime(2026, 12, 2, 12, 0, tzinfo=UTC)]
    clock = lambda: now[0]  # noqa: E731
    ids = {name: f"{ch * 8}-0000-4000-8000-00000000000{i}" for i, (name, ch) in enumerate((("a", "a"), ("b", "b"), ("c", "c")), 1)}
    with CallStore(db_url, host="agent-a", clock=clock) as a, CallStore(db_url, host="agent-b", clock=clock) as b, \
            CallStore(db_url, host="agent-c", clock=clock) as c:
        for store, name in ((a, "a"), (b, "b"), (c, "c")):
            store.start_call(ids[name], direction="inbound", caller=name, agent="support", started_at=now[0])
            store.heartbeat()
        now[0] += timedelta(seconds=30)
        b.heartbeat()
        c.heartbeat()
        assert b.close_calls_of_silent_hosts(60) == {}  # nobody silent for 60 s yet
        now[0] += timedelta(seconds=45)  # a: silent 75 s; c: 45 s
        b.heartbeat()
        assert b.close_calls_of_silent_hosts(60) == {"agent-a": [ids["a"]]}
        dead = b.get_call(ids["a"])
        assert dead is not None and dead.end_reason == "interrupted" and dead.outcome == "interrupted"
        assert dead.ended_at == now[0]
        for name in ("b", "c"):
            live = b.get_call(ids[name])
            assert live is not None and live.ended_at is None
        assert a.close_calls_of_silent_hosts(60) == {}  # never its own (it is evidently running)
        assert b.close_calls_of_silent_hosts(60) == {}  # nothing left open of a


def test_the_host_defaults_to_the_machine_name_and_is_checked(tmp_path: Path) -> None:
    import socket

    with CallStore(f"sqlite:///{tmp_path}/calls.db") as store:
        assert store.host == socket.gethostname()
    with pytest.raises(ValueError, match="host"):
        CallStore(f"sqlite:///{tmp_path}/calls.db", host="")
