"""Tables of the call log, the frozen value types the store hands out, and the input checks.

Three tables: ``calls`` (one row per call), ``turns`` (what each side said, with the timing
record of that turn) and ``events`` (barge-ins, fallbacks, reprompts, DTMF, engine errors).
Only portable column types are used, so the same schema runs on SQLite and PostgreSQL.

The ORM classes never leave :mod:`db.store`; readers get :class:`CallView` snapshots.
The ``check_*`` functions validate (and normalise) what the store is given; they raise
``ValueError`` with a message that names the argument.
"""

from __future__ import annotations

import dataclasses
import json
import math
import numbers
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from sqlalchemy import Boolean, DateTime, Dialect, Float, ForeignKey, Index, Integer, String
from sqlalchemy import Text, TypeDecorator, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

DIRECTIONS: Final = frozenset({"inbound", "outbound"})
ROLES: Final = frozenset({"caller", "agent", "tool", "system"})
#: ``direction`` and ``agent`` of a row the store had to create because a write arrived for a
#: call it had never seen (see ``CallStore``: a call record is never lost).
UNKNOWN: Final = "unknown"


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python.

    PostgreSQL stores it as ``timestamp with time zone``; SQLite, which has no time zones,
    stores naive UTC text. Either way the value read back carries ``tzinfo=UTC``.
    Naive datetimes are refused: the store checks that earlier, with a clearer message.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(f"naive datetime {value!r}: a timezone-aware UTC time is required")
        value = value.astimezone(UTC)
        return value if dialect.name == "postgresql" else value.replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime()}


class CallRecord(Base):
    __tablename__ = "calls"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    direction: Mapped[str] = mapped_column(String(16))
    caller: Mapped[str | None] = mapped_column(String(128))
    agent: Mapped[str] = mapped_column(String(128))
    started_at: Mapped[datetime] = mapped_column(index=True)
    answered_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str | None] = mapped_column(String(64))
    media: Mapped[str | None] = mapped_column(String(64))
    recording_path: Mapped[str | None] = mapped_column(String(1024))
    recording_s: Mapped[float | None] = mapped_column(Float)
    summary: Mapped[str | None] = mapped_column(Text)
    metadata_json: Mapped[str | None] = mapped_column(Text)
    # Revision 0002 (see db/migrations): what a review needs beyond the outcome.
    callee: Mapped[str | None] = mapped_column(String(128))  # the number dialled (inbound) or called
    disposition: Mapped[str | None] = mapped_column(String(256))  # why: "the caller asked for a person"
    transfer_target: Mapped[str | None] = mapped_column(String(256))  # e.g. PJSIP/200, queue@context
    amd_result: Mapped[str | None] = mapped_column(String(32))  # outbound: human | machine | ...
    # Revision 0003: which service instance ran the call, so agent hosts can share one database
    # and each closes only its own calls after a crash (CallStore.close_open_calls).
    host: Mapped[str | None] = mapped_column(String(128), index=True)

    # passive_deletes: deleting a call leaves its children to the FK's ON DELETE CASCADE.
    turns: Mapped[list[TurnRecord]] = relationship(
        back_populates="call", cascade="all, delete-orphan", passive_deletes=True
    )
    events: Mapped[list[EventRecord]] = relationship(
        back_populates="call", cascade="all, delete-orphan", passive_deletes=True
    )

    def view(self, turns: Sequence[TurnRecord], events: Sequence[EventRecord]) -> CallView:
        return CallView(
            id=self.id, direction=self.direction, caller=self.caller, agent=self.agent,
            started_at=self.started_at, answered_at=self.answered_at, ended_at=self.ended_at,
            end_reason=self.end_reason, outcome=self.outcome, media=self.media,
            recording_path=self.recording_path, recording_s=self.recording_s,
            summary=self.summary, metadata=_loads(self.metadata_json),
            turns=tuple(t.view() for t in turns), events=tuple(e.view() for e in events),
            callee=self.callee, disposition=self.disposition, transfer_target=self.transfer_target,
            amd_result=self.amd_result, host=self.host,
        )


class HostRecord(Base):
    """An agent host sharing the database, and when it last said it was alive: a host silent for
    too long is dead, and another host finishes the calls it left open (CallStore.close_calls_of_silent_hosts)."""

    __tablename__ = "hosts"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    last_seen: Mapped[datetime]


class TurnRecord(Base):
    __tablename__ = "turns"
    __table_args__ = (UniqueConstraint("call_id", "turn_index", name="uq_turns_call_index"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    index: Mapped[int] = mapped_column("turn_index", Integer)
    role: Mapped[str] = mapped_column(String(16))
    text: Mapped[str] = mapped_column(Text)
    interrupted: Mapped[bool] = mapped_column(Boolean, default=False)
    # Timing record of the turn, milliseconds since the call's started_at.
    speech_end_ms: Mapped[float | None] = mapped_column(Float)
    endpoint_ms: Mapped[float | None] = mapped_column(Float)
    stt_done_ms: Mapped[float | None] = mapped_column(Float)
    llm_first_token_ms: Mapped[float | None] = mapped_column(Float)
    tts_first_audio_ms: Mapped[float | None] = mapped_column(Float)
    first_frame_ms: Mapped[float | None] = mapped_column(Float)
    barge_in_ms: Mapped[float | None] = mapped_column(Float)
    stt_confidence: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime]
    full_text: Mapped[str | None] = mapped_column(Text)  # an agent turn cut short: the reply as generated by then

    call: Mapped[CallRecord] = relationship(back_populates="turns")

    def view(self) -> TurnView:
        timings = TurnTimings(**{name: getattr(self, name) for name in TIMING_FIELDS})
        return TurnView(self.index, self.role, self.text, self.interrupted, timings,
                        self.stt_confidence, self.created_at, self.full_text)


class EventRecord(Base):
    __tablename__ = "events"
    __table_args__ = (Index("ix_events_call_t", "call_id", "t_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    call_id: Mapped[str] = mapped_column(ForeignKey("calls.id", ondelete="CASCADE"))
    t_ms: Mapped[float] = mapped_column(Float)
    kind: Mapped[str] = mapped_column(String(64))
    detail_json: Mapped[str | None] = mapped_column(Text)

    call: Mapped[CallRecord] = relationship(back_populates="events")

    def view(self) -> EventView:
        return EventView(self.t_ms, self.kind, _loads(self.detail_json))


def _loads(text: str | None) -> dict[str, Any] | None:
    return None if text is None else dict(json.loads(text))


# --- value types handed to callers -------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TurnTimings:
    """When the milestones of one turn happened, in ms since the call's ``started_at``.

    Every field is optional: a caller turn has no TTS, an agent turn has no STT.
    """

    speech_end_ms: float | None = None  # caller's last voiced frame
    endpoint_ms: float | None = None  # endpointer decided the caller had finished
    stt_done_ms: float | None = None  # final transcript ready
    llm_first_token_ms: float | None = None
    tts_first_audio_ms: float | None = None
    first_frame_ms: float | None = None  # first agent frame on the wire
    barge_in_ms: float | None = None  # caller talked over the agent


TIMING_FIELDS: Final = tuple(f.name for f in dataclasses.fields(TurnTimings))


@dataclass(frozen=True, slots=True)
class TurnView:
    index: int
    role: str
    text: str
    interrupted: bool
    timings: TurnTimings
    stt_confidence: float | None
    created_at: datetime
    full_text: str | None = None  # agent turns cut short: the reply as generated by then; ``text`` is what was heard


@dataclass(frozen=True, slots=True)
class EventView:
    t_ms: float
    kind: str
    detail: dict[str, Any] | None


@dataclass(frozen=True, slots=True)
class CallView:
    """A read-only snapshot of one call. ``turns`` are ordered by index, ``events`` by time.

    ``direction == "unknown"`` marks a row the store created to keep a write for a call
    that was never started (see ``CallStore``).
    """

    id: str
    direction: str
    caller: str | None
    agent: str
    started_at: datetime
    answered_at: datetime | None
    ended_at: datetime | None
    end_reason: str | None
    outcome: str | None
    media: str | None
    recording_path: str | None
    recording_s: float | None
    summary: str | None
    metadata: dict[str, Any] | None
    turns: tuple[TurnView, ...] = ()
    events: tuple[EventView, ...] = ()
    callee: str | None = None
    disposition: str | None = None
    transfer_target: str | None = None
    amd_result: str | None = None
    host: str | None = None  # the service instance that ran it (None: before revision 0003)


@dataclass(frozen=True, slots=True)
class Overview:
    """Calls of a period for the console's overview: (started_at, outcome, disposition) per
    call, and (call started_at, voice-to-voice ms) per agent turn."""

    calls: list[tuple[datetime, str | None, str | None]]
    v2v_ms: list[tuple[datetime, float]]


# --- input checks: the store runs these before it touches the database -------------------


def check_call_id(value: object) -> str:
    if isinstance(value, uuid.UUID):
        return str(value)
    if not isinstance(value, str):
        raise ValueError(f"call_id must be a UUID string, got {type(value).__name__}")
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ValueError(f"call_id {value!r} is not a UUID") from None


def check_aware(name: str, value: object) -> datetime:
    if not isinstance(value, datetime):
        raise ValueError(f"{name} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{name}={value!r} is naive: pass an aware UTC time, datetime.now(UTC)")
    return value.astimezone(UTC)


def check_text(name: str, value: object, max_len: int | None = None, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__}")
    if not empty and not value.strip():
        raise ValueError(f"{name} must not be empty")
    if max_len is not None and len(value) > max_len:
        raise ValueError(f"{name} is {len(value)} characters long; the limit is {max_len}")
    return value


def check_opt_text(name: str, value: object, max_len: int | None = None) -> str | None:
    """Like check_text, but None or a blank string (an anonymous caller ID) gives None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return check_text(name, value, max_len)


def check_number(name: str, value: object, *, minimum: float | None = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {type(value).__name__}")
    number = float(value)
    if not math.isfinite(number) or (minimum is not None and number < minimum):
        bound = "" if minimum is None else f" and >= {minimum:g}"
        raise ValueError(f"{name}={value!r} must be finite{bound}")
    return number


def check_json(name: str, value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict or None, got {type(value).__name__}")
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} is not JSON-serialisable: {exc}") from None


def check_timings(value: object) -> dict[str, float | None]:
    if value is None:
        value = TurnTimings()
    if not isinstance(value, TurnTimings):
        raise ValueError(f"timings must be a TurnTimings or None, got {type(value).__name__}")
    return {
        name: None if (ms := getattr(value, name)) is None else check_number(name, ms)
        for name in TIMING_FIELDS
    }
