"""The one module that writes SQL: the call log (calls, turns, events).

``CallStore`` is synchronous; every method is one short transaction that commits before it
returns. ``AsyncCallStore`` runs the same methods on one dedicated worker thread, so the dialog
loop never blocks on the database and SQLite writes are serialised.

A call record is never lost: a write for a call id the store has not seen (a turn or event
logged before ``start_call``, a ``finish_call`` after a crash) creates a minimal row with
``direction == agent == "unknown"`` and logs a warning; a later ``start_call`` fills it in.
Writes retry briefly while SQLite says "database is locked". With a ``spool`` file, a write
the database cannot take (it is down, unreachable, locked for too long) goes to that file and
is replayed in order when the database is back (:mod:`db.spool`). Bad input raises ``ValueError``
before the database is touched, and is never spooled. Times must be timezone-aware; they are read back as UTC.

The schema is brought up to date on first use by the Alembic migrations (:mod:`db.migrate`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

from sqlalchemy import create_engine, event, func, or_, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from db import migrate
from db.spool import Spool, is_outage
from db.schema import DIRECTIONS, ROLES, UNKNOWN, CallRecord, CallView, EventRecord, HostRecord, Overview
from db.schema import TurnRecord, TurnTimings, check_aware, check_call_id, check_json
from db.schema import check_number, check_opt_text, check_text, check_timings

log = logging.getLogger(__name__)

DEFAULT_URL = "sqlite:///phoneagent.db"
LOCK_RETRIES = 5  # after the first try; SQLite's own busy_timeout has waited before each
LOCK_BACKOFF_S = 0.05
CONFLICT_RETRIES = 2  # a concurrent writer took the same turn index or created the same call
BUSY_TIMEOUT_MS = 5000
CONNECT_TIMEOUT_S = 5
UTC_NOW: Callable[[], datetime] = functools.partial(datetime.now, UTC)

T = TypeVar("T")
P = ParamSpec("P")
_Entry = tuple[str, tuple[Any, ...], dict[str, Any]]
#: What add_turn returns for a turn that went to the spool (its index is decided on replay).
SPOOLED_INDEX = -1


class CallStore:
    """Synchronous call log on any SQLAlchemy URL (SQLite file or ``:memory:``, PostgreSQL).

    Safe to share between threads (each gets a pooled connection); from asyncio use
    :class:`AsyncCallStore`. ``clock`` stamps ``turns.created_at`` and placeholder rows.
    """

    def __init__(self, url: str = DEFAULT_URL, *, clock: Callable[[], datetime] = UTC_NOW,
                 spool: Path | str | None = None, host: str | None = None) -> None:
        # Every call this store starts is stamped with `host` (default: this machine's name), and
        # close_open_calls touches only those: agent hosts can share one database.
        self.host = check_text("host", host if host is not None else socket.gethostname(), 128)
        parsed = make_url(url)
        options: dict[str, Any] = {}
        if parsed.get_backend_name() == "sqlite" and parsed.database in (None, "", ":memory:"):
            # One shared connection, or each thread would see its own empty database. Use it
            # from one thread at a time (AsyncCallStore does).
            options = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        elif parsed.get_backend_name() == "postgresql":
            # A restarted server leaves dead pooled connections: test each before use. An
            # unreachable host must fail in seconds (and spool), not after TCP's minutes.
            options = {"pool_pre_ping": True, "connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
        self._engine = create_engine(parsed, **options)
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine, "connect", _sqlite_pragmas)
        self._sessions = sessionmaker(self._engine, expire_on_commit=False)
        self._clock = clock
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._closed = False
        self._spool = None if spool is None else Spool(spool)
        self._spool_lock = threading.RLock()
        self._replaying = False

    # --- writes ---------------------------------------------------------------------------

    def start_call(self, call_id: str, *, direction: str, caller: str | None, agent: str,
                   started_at: datetime | None = None, media: str | None = None,
                   metadata: dict[str, Any] | None = None, callee: str | None = None) -> None:
        """Record a new call. Fills in a placeholder row; starting a call twice is an error.
        ``started_at`` defaults to the store's clock (callers need not read a wall clock)."""
        cid = check_call_id(call_id)
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r} is not one of {sorted(DIRECTIONS)}")
        fields_in = dict(direction=direction, caller=caller, agent=agent, media=media, metadata=metadata, callee=callee)
        fields: dict[str, Any] = dict(
            direction=direction, caller=check_opt_text("caller", caller, 128),
            agent=check_text("agent", agent, 128),
            started_at=check_aware("started_at", started_at) if started_at is not None else self._now(),
            media=check_opt_text("media", media, 64),
            metadata_json=check_json("metadata", metadata), callee=check_opt_text("callee", callee, 128),
            host=self.host,
        )

        def work(s: Session) -> None:
            call = s.get(CallRecord, cid)
            if call is None:
                s.add(CallRecord(id=cid, **fields))
            elif call.direction == UNKNOWN:
                for name, value in fields.items():
                    setattr(call, name, value)
            else:
                raise ValueError(f"call {cid} was already started")

        self._write(("start_call", (cid,), dict(fields_in, started_at=fields["started_at"])), work, None)

    def mark_answered(self, call_id: str, at: datetime) -> None:
        when, cid = check_aware("at", at), check_call_id(call_id)
        self._update(cid, "mark_answered", when, ("mark_answered", (cid, when), {}), answered_at=when)

    def add_turn(self, call_id: str, role: str, text: str, *, interrupted: bool = False,
                 timings: TurnTimings | None = None, stt_confidence: float | None = None,
                 index: int | None = None, full_text: str | None = None) -> int:
        """Append a turn and return its index within the call (0, 1, ...).

        ``index=None`` takes the next free index; an explicit one must be unused. For agent
        turns ``text`` is what the caller actually heard. ``stt_confidence`` is 0..1 by
        convention (only finiteness is checked). ``full_text``: an agent turn the caller cut
        short, the reply as far as it was generated.
        """
        cid = check_call_id(call_id)
        if role not in ROLES:
            raise ValueError(f"role {role!r} is not one of {sorted(ROLES)}")
        if index is not None and (type(index) is not int or index < 0):
            raise ValueError(f"index={index!r} must be an int >= 0 (or None for the next one)")
        if not isinstance(interrupted, bool):
            raise ValueError(f"interrupted must be a bool, got {type(interrupted).__name__}")
        confidence = None
        if stt_confidence is not None:
            confidence = check_number("stt_confidence", stt_confidence, minimum=None)
        row: dict[str, Any] = dict(
            call_id=cid, role=role, text=check_text("text", text, empty=True),
            interrupted=interrupted, stt_confidence=confidence, **check_timings(timings),
            full_text=check_opt_text("full_text", full_text),
        )

        def work(s: Session) -> int:
            now = self._now()
            self._ensure(s, cid, now, "add_turn")
            of_call = TurnRecord.call_id == cid
            at = index
            if at is None:
                next_index = func.coalesce(func.max(TurnRecord.index) + 1, 0)
                at = s.scalar(select(next_index).where(of_call))
            elif s.scalar(select(TurnRecord.id).where(of_call, TurnRecord.index == at)) is not None:
                raise ValueError(f"call {cid} already has a turn with index {at}")
            s.add(TurnRecord(index=at, created_at=now, **row))
            s.flush()  # a clash on (call_id, index) surfaces here, inside the retry
            return int(at or 0)

        entry = ("add_turn", (cid, role, text), dict(interrupted=interrupted, timings=timings, stt_confidence=stt_confidence,
                                                     index=index, full_text=full_text))
        return self._write(entry, work, SPOOLED_INDEX)

    def add_event(self, call_id: str, t_ms: float, kind: str,
                  detail: dict[str, Any] | None = None) -> None:
        """Log a barge-in, fallback, reprompt, DTMF digit, engine error... at ``t_ms``."""
        cid, at = check_call_id(call_id), check_number("t_ms", t_ms)
        kind, detail_json = check_text("kind", kind, 64), check_json("detail", detail)

        def work(s: Session) -> None:
            self._ensure(s, cid, None, "add_event")
            s.add(EventRecord(call_id=cid, t_ms=at, kind=kind, detail_json=detail_json))

        self._write(("add_event", (cid, at, kind, detail), {}), work, None)

    def finish_call(self, call_id: str, *, end_reason: str, ended_at: datetime | None = None,
                    outcome: str | None = None, summary: str | None = None, disposition: str | None = None,
                    transfer_target: str | None = None, amd_result: str | None = None) -> None:
        """Close the call. ``outcome``, ``summary`` and the review fields of None leave any
        stored value alone; ``ended_at`` defaults to the store's clock."""
        cid = check_call_id(call_id)
        ended = check_aware("ended_at", ended_at) if ended_at is not None else self._now()
        reason = check_text("end_reason", end_reason, 64)
        values: dict[str, Any] = dict(ended_at=ended, end_reason=reason)
        if outcome is not None:
            values["outcome"] = check_opt_text("outcome", outcome, 64)
        if summary is not None:
            values["summary"] = check_opt_text("summary", summary)
        for name, value, limit in (("disposition", disposition, 256), ("transfer_target", transfer_target, 256),
                                   ("amd_result", amd_result, 32)):
            if value is not None:
                values[name] = check_opt_text(name, value, limit)
        entry = ("finish_call", (cid,), dict(end_reason=reason, ended_at=ended, outcome=outcome, summary=summary,
                                             disposition=disposition, transfer_target=transfer_target, amd_result=amd_result))
        self._update(cid, "finish_call", ended, entry, **values)

    def set_recording(self, call_id: str, path: str, seconds: float) -> None:
        cid, where = check_call_id(call_id), check_text("path", path, 1024)
        length = check_number("seconds", seconds)
        self._update(cid, "set_recording", None, ("set_recording", (cid, where, length), {}),
                     recording_path=where, recording_s=length)

    def delete_call(self, call_id: str) -> bool:
        """Delete a call with its turns and events (ON DELETE CASCADE). False if unknown."""
        cid = check_call_id(call_id)

        def work(s: Session) -> bool:
            call = s.get(CallRecord, cid)
            if call is not None:
                s.delete(call)  # passive_deletes: the database removes the children
            return call is not None

        return self._run(work)

    # --- reads: snapshots, never live ORM objects -----------------------------------------

    def get_call(self, call_id: str) -> CallView | None:
        """The call with its turns (by index) and events (by time), or None."""
        cid = check_call_id(call_id)

        def work(s: Session) -> CallView | None:
            call = s.get(CallRecord, cid)
            if call is None:
                return None
            turns = s.scalars(select(TurnRecord).where(TurnRecord.call_id == cid)
                              .order_by(TurnRecord.index)).all()
            events = s.scalars(select(EventRecord).where(EventRecord.call_id == cid)
                               .order_by(EventRecord.t_ms, EventRecord.id)).all()
            return call.view(turns, events)

        return self._run(work)

    def list_calls(self, limit: int = 50, since: datetime | None = None, *, before: datetime | None = None,
                   agent: str | None = None, outcome: str | None = None, text: str | None = None,
                   caller_digits: str | None = None, amd_result: str | None = None) -> list[CallView]:
        """Newest first (by ``started_at``): calls started at or after ``since`` and before
        ``before``, of ``agent``, with ``outcome`` / ``amd_result``, with a turn containing ``text`` (any case),
        from the number ``caller_digits`` however it was written ("+1 (555) 123-4567"; a
        country code more or less matches, from 7 digits on).

        For speed the views carry empty ``turns``/``events``: :meth:`get_call` has them.
        """
        if type(limit) is not int or limit < 1:
            raise ValueError(f"limit={limit!r} must be an int >= 1")
        start = None if since is None else check_aware("since", since)
        end = None if before is None else check_aware("before", before)
        who = None if agent is None else check_text("agent", agent, 128)
        how = None if outcome is None else check_text("outcome", outcome, 64)
        amd = None if amd_result is None else check_text("amd_result", amd_result, 32)
        said = None if text is None else check_text("text", text, 200)
        number = None if caller_digits is None else check_text("caller_digits", caller_digits, 32)
        if number is not None and (not number.isdigit() or len(number) < 4):
            raise ValueError(f"caller_digits={number!r} must be 4 or more digits")

        def work(s: Session) -> list[CallView]:
            query = select(CallRecord).order_by(CallRecord.started_at.desc(), CallRecord.id)
            if start is not None:
                query = query.where(CallRecord.started_at >= start)
            if end is not None:
                query = query.where(CallRecord.started_at < end)
            if who is not None:
                query = query.where(CallRecord.agent == who)
            if how is not None:
                query = query.where(CallRecord.outcome == how)
            if amd is not None:
                query = query.where(CallRecord.amd_result == amd)
            if said is not None:
                query = query.where(CallRecord.id.in_(select(TurnRecord.call_id).where(TurnRecord.text.icontains(said, autoescape=True))))
            if number is None:
                return [c.view((), ()) for c in s.scalars(query.limit(limit))]
            # The last four digits are written together in every usual form: the database
            # narrows by them, the exact comparison is on the digits.
            query = query.where(CallRecord.caller.endswith(number[-4:], autoescape=True))
            return [c.view((), ()) for c in s.scalars(query) if _same_number(c.caller or "", number)][:limit]

        return self._run(work)

    def overview(self, since: datetime, before: datetime | None = None) -> Overview:
        """What the console's overview draws, for calls started in [since, before): each call's
        start, outcome and disposition, and each agent turn's voice-to-voice time (ms)."""
        start = check_aware("since", since)
        end = None if before is None else check_aware("before", before)

        def work(s: Session) -> Overview:
            window = [CallRecord.started_at >= start] + ([] if end is None else [CallRecord.started_at < end])
            calls = s.execute(select(CallRecord.started_at, CallRecord.outcome, CallRecord.disposition)
                              .where(*window).order_by(CallRecord.started_at)).all()
            v2v = TurnRecord.first_frame_ms - TurnRecord.speech_end_ms
            turns = s.execute(select(CallRecord.started_at, v2v).join(TurnRecord, TurnRecord.call_id == CallRecord.id)
                              .where(*window, TurnRecord.role == "agent", TurnRecord.first_frame_ms.is_not(None),
                                     TurnRecord.speech_end_ms.is_not(None))).all()
            return Overview(calls=[(c[0], c[1], c[2]) for c in calls], v2v_ms=[(t[0], float(t[1] or 0.0)) for t in turns])

        return self._run(work)

    def close_open_calls(self, end_reason: str = "interrupted") -> list[str]:
        """Finish every call of this store's host that has no end: the service stopped without
        finishing them (a crash, a kill -9, a power cut). Run at service start, before the first
        call; the outcome says "interrupted". Calls of other hosts sharing the database are
        theirs to close; calls from before revision 0003 (no host) were one service's, so any
        host closes those."""
        reason = check_text("end_reason", end_reason, 64)

        def work(s: Session) -> list[str]:
            mine = or_(CallRecord.host == self.host, CallRecord.host.is_(None))
            return [c.id for c in self._interrupt_open(s, mine, reason)]

        self.replay_spool()  # calls that ended while the database was down are not open
        return self._run(work)

    def heartbeat(self) -> None:
        """Say this host is alive (every few seconds while the service runs)."""
        def work(s: Session) -> None:
            row = s.get(HostRecord, self.host)
            if row is None:
                s.add(HostRecord(name=self.host, last_seen=self._now()))
            else:
                row.last_seen = self._now()

        self._run(work)

    def close_calls_of_silent_hosts(self, silent_s: float, end_reason: str = "interrupted") -> dict[str, list[str]]:
        """Finish the open calls of every other host not heard from for `silent_s`: it died and
        may never come back to close them itself. Returns {host: [call ids]}. A host that was
        only cut off from the database and still has a call finishes its record when the call
        ends, with the real reason (finish_call overwrites); `silent_s` should be well past the
        lease (by then Asterisk has hung up a dead host's callers)."""
        reason = check_text("end_reason", end_reason, 64)

        def work(s: Session) -> dict[str, list[str]]:
            cutoff = self._now() - timedelta(seconds=silent_s)
            silent = s.scalars(select(HostRecord.name).where(HostRecord.last_seen < cutoff, HostRecord.name != self.host)).all()
            closed: dict[str, list[str]] = {}
            for call in self._interrupt_open(s, CallRecord.host.in_(silent), reason) if silent else ():
                closed.setdefault(str(call.host), []).append(call.id)
            return closed

        return self._run(work)

    def _interrupt_open(self, s: Session, which: Any, reason: str) -> Sequence[CallRecord]:
        """Finish the open calls `which` selects as interrupted, now."""
        now = self._now()
        calls = s.scalars(select(CallRecord).where(CallRecord.ended_at.is_(None), which)).all()
        for call in calls:
            call.ended_at, call.end_reason, call.outcome = now, reason, "interrupted"
        return calls

    # --- plumbing -------------------------------------------------------------------------

    def close(self) -> None:
        """Release the connections. Idempotent; the store cannot be used afterwards."""
        self._closed = True
        self._engine.dispose()

    def __enter__(self) -> CallStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _now(self) -> datetime:
        return check_aware("clock()", self._clock())

    def _ensure(self, s: Session, cid: str, started_at: datetime | None, why: str) -> CallRecord:
        """The call's row; a minimal one (logged) if the call was never started."""
        call = s.get(CallRecord, cid)
        if call is None:
            log.warning("%s for unknown call %s: creating a minimal call record", why, cid)
            call = CallRecord(id=cid, direction=UNKNOWN, agent=UNKNOWN, host=self.host,
                              started_at=started_at or self._now())
            s.add(call)
            s.flush()
        return call

    def _update(self, cid: str, why: str, started_at: datetime | None, entry: _Entry, **values: Any) -> None:
        def work(s: Session) -> None:
            call = self._ensure(s, cid, started_at, why)
            for name, value in values.items():
                setattr(call, name, value)

        self._write(entry, work, None)

    # --- the spool: writes the database could not take ---------------------------------------

    @property
    def spool_pending(self) -> int:
        """Writes waiting in the spool for the database (0 without a spool)."""
        return 0 if self._spool is None else self._spool.pending

    def replay_spool(self) -> int:
        """Try the spooled writes now (the service calls this every few seconds); returns how
        many are still waiting."""
        if self._spool is None:
            return 0
        with self._spool_lock:
            return self._replay()

    def _replay(self) -> int:
        assert self._spool is not None
        self._replaying = True
        try:
            self._spool.replay(lambda method, args, kwargs: getattr(self, method)(*args, **kwargs))
        finally:
            self._replaying = False
        return self._spool.pending

    def _write(self, entry: _Entry, work: Callable[[Session], T], spooled: T) -> T:
        """Run a write, or spool it (`entry`: the method and its checked arguments) when the
        database cannot take it; `spooled` is then returned in place of the result."""
        if self._spool is None or self._replaying:
            return self._run(work)
        with self._spool_lock:
            if self._spool.waiting and self._replay():
                self._spool.append(*entry)  # behind the older ones, in order
                return spooled
            try:
                return self._run(work)
            except Exception as exc:
                if not is_outage(exc):
                    raise
                log.warning("call log unavailable (%s); %s spooled to %s", type(exc).__name__, entry[0], self._spool.path)
                self._spool.append(*entry)
                return spooled

    def _run(self, work: Callable[[Session], T]) -> T:
        """Run ``work`` in one transaction; retry while locked or after losing a race."""
        locked = conflicts = 0
        while True:
            if self._closed:
                raise RuntimeError("CallStore is closed")
            try:
                self._create_schema()
                with self._sessions.begin() as session:
                    return work(session)
            except OperationalError as exc:
                message = str(exc.orig).lower()
                if locked == LOCK_RETRIES or not ("locked" in message or "busy" in message):
                    raise
                delay = LOCK_BACKOFF_S * 2**locked
                locked += 1
                log.warning("database is locked; retry %d/%d in %.2fs", locked, LOCK_RETRIES, delay)
                time.sleep(delay)
            except IntegrityError:
                if conflicts == CONFLICT_RETRIES:
                    raise
                conflicts += 1  # the next try sees the other writer's row and adapts

    def upgrade_schema(self) -> tuple[str | None, str]:
        """Run the migrations now (they also run before the first read or write); returns the
        revision before and after."""
        with self._schema_lock:
            revisions = migrate.upgrade(self._engine)
            self._schema_ready = True
            return revisions

    def _create_schema(self) -> None:
        if not self._schema_ready:
            self.upgrade_schema()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")  # first: the WAL switch may wait
        cursor.execute("PRAGMA journal_mode=WAL")  # readers never block the one writer
        cursor.execute("PRAGMA foreign_keys=ON")  # off by default in SQLite; CASCADE needs it
    finally:
        cursor.close()


def _in_worker(
    method: Callable[Concatenate[CallStore, P], T],
) -> Callable[Concatenate[AsyncCallStore, P], Coroutine[Any, Any, T]]:
    """The coroutine twin of a CallStore method: same arguments, run on the store's worker."""

    @functools.wraps(method)
    async def run(self: AsyncCallStore, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await self._submit(functools.partial(method, self._store, *args, **kwargs))

    return run


class AsyncCallStore:
    """:class:`CallStore` for asyncio: each method runs on one dedicated worker thread.

    The single thread serialises the writes (SQLite has one writer anyway) and keeps them in
    the order they were issued. A caller cancelled while awaiting does not cancel its write.
    The wrapped store is owned: :meth:`aclose` drains the queued writes, then closes it.
    """

    def __init__(self, store: CallStore | str = DEFAULT_URL) -> None:
        self._store = store if isinstance(store, CallStore) else CallStore(store)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="callstore")
        self._closed = False

    start_call = _in_worker(CallStore.start_call)
    mark_answered = _in_worker(CallStore.mark_answered)
    add_turn = _in_worker(CallStore.add_turn)
    add_event = _in_worker(CallStore.add_event)
    finish_call = _in_worker(CallStore.finish_call)
    set_recording = _in_worker(CallStore.set_recording)
    delete_call = _in_worker(CallStore.delete_call)
    get_call = _in_worker(CallStore.get_call)
    list_calls = _in_worker(CallStore.list_calls)
    close_open_calls = _in_worker(CallStore.close_open_calls)
    heartbeat = _in_worker(CallStore.heartbeat)
    close_calls_of_silent_hosts = _in_worker(CallStore.close_calls_of_silent_hosts)
    overview = _in_worker(CallStore.overview)
    replay_spool = _in_worker(CallStore.replay_spool)

    @property
    def spool_pending(self) -> int:
        return self._store.spool_pending

    async def aclose(self) -> None:
        """Wait for the queued writes, close the store, stop the worker. Idempotent."""
        if self._closed:
            return
        self._closed = True  # refuse new work from here on
        loop = asyncio.get_running_loop()
        # FIFO: the close runs after every write already queued.
        await asyncio.shield(loop.run_in_executor(self._executor, self._store.close))
        self._executor.shutdown(wait=True)  # the worker is idle by now: the join is immediate

    async def __aenter__(self) -> AsyncCallStore:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _submit(self, job: Callable[[], T]) -> T:
        if self._closed:
            raise RuntimeError("AsyncCallStore is closed")
        future = asyncio.get_running_loop().run_in_executor(self._executor, job)
        try:
            return await asyncio.shield(future)  # cancelling the caller must not drop the write
        except asyncio.CancelledError:
            future.add_done_callback(_log_orphan_failure)  # nobody is left to see an error
            raise


def _log_orphan_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and (exc := future.exception()) is not None:
        log.error("call store write failed after its caller was cancelled", exc_info=exc)


def _same_number(written: str, digits: str) -> bool:
    mine = "".join(ch for ch in written if ch.isdigit())
    short, long = sorted((mine, digits), key=len)
    return mine == digits or (len(short) >= 7 and long.endswith(short))
