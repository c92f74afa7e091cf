"""Call-log writes kept on local disk while the database is unreachable, replayed in order
when it is back: a PostgreSQL restart or a network blip must not lose a turn of a live call.

One JSON line per write (method name and its already-checked arguments), flushed and fsynced
before the write is reported done. While anything is spooled every later write is spooled
behind it, so a call's turns keep their order and its end never lands before its turns.
Replay is at least once: a crash between applying an entry and rewriting the file may apply it
again (a repeated event or turn, never a lost one). An entry the database refuses for its
content (not an outage) is moved to ``<spool>.rejected`` with the error, never dropped.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from db.schema import TurnTimings

log = logging.getLogger(__name__)

#: What the spool keeps. Reads and deletes are never spooled: they need the database.
SPOOLED = frozenset({"start_call", "mark_answered", "add_turn", "add_event", "finish_call", "set_recording"})


def is_outage(exc: BaseException) -> bool:
    """The database could not be reached or went away (not: it refused this data)."""
    if isinstance(exc, IntegrityError):
        return False
    if isinstance(exc, (OperationalError, InterfaceError)):
        return True
    return isinstance(exc, DBAPIError) and exc.connection_invalidated


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return {"$datetime": value.isoformat()}
    if isinstance(value, TurnTimings):
        return {"$timings": asdict(value)}
    if isinstance(value, dict):
        return {"$dict": {k: _encode(v) for k, v in value.items()}}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value: Any) -> Any:
    if isinstance(value, dict):
        if "$datetime" in value:
            return datetime.fromisoformat(value["$datetime"])
        if "$timings" in value:
            return TurnTimings(**value["$timings"])
        if "$dict" in value:
            return {k: _decode(v) for k, v in value["$dict"].items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


class Spool:
    """The spool file of one store. Not thread-safe on its own: the store holds its lock."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.rejected = self.path.with_name(self.path.name + ".rejected")
        self.path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def waiting(self) -> bool:
        """Anything spooled (a stat, not a read: asked before every write)."""
        return self.path.exists()

    @property
    def pending(self) -> int:
        """Writes waiting for the database."""
        try:
            with self.path.open("rb") as f:
                return sum(1 for line in f if line.strip())
        except FileNotFoundError:
            return 0

    def append(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        if method not in SPOOLED:
            raise ValueError(f"{method} is not a write the spool keeps")
        line = json.dumps({"method": method, "args": _encode(list(args)), "kwargs": _encode(kwargs)}, ensure_ascii=False)
        with self.path.open("a", encoding="utf-8") as f:
            f.write(line + "\n")
            f.flush()
            os.fsync(f.fileno())

    def replay(self, apply: Callable[[str, list[Any], dict[str, Any]], object]) -> int:
        """Apply the spooled writes in order until the database fails again; returns how many
        were applied. What is left stays spooled for the next try."""
        try:
            lines = [line for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]
        except FileNotFoundError:
            return 0
        done = 0
        for line in lines:
            try:
                entry = json.loads(line)
                apply(entry["method"], _decode(entry["args"]), _decode(entry["kwargs"]))
            except Exception as exc:  # noqa: BLE001 - sorted into outage (stop) and bad entry (set aside)
                if is_outage(exc):
                    break
                log.error("spooled call-log write refused, kept in %s: %s", self.rejected, exc)
                with self.rejected.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({"entry": line, "error": str(exc)}, ensure_ascii=False) + "\n")
            done += 1
        self._keep(lines[done:])
        if done:
            log.info("replayed %d spooled call-log writes; %d left", done, len(lines) - done)
        return done

    def _keep(self, lines: list[str]) -> None:
        if not lines:
            self.path.unlink(missing_ok=True)
            return
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w", encoding="utf-8") as f:
            f.write("".join(line + "\n" for line in lines))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
