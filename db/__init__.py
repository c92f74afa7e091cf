"""Call log persistence (SQLAlchemy 2.0): calls, their turns with per-turn timings, events.

``db.store`` is the only module that writes SQL; ``db.schema`` holds the tables and the frozen
views the store returns. This package knows nothing of audio, models or the dialog loop::

    store = AsyncCallStore("sqlite:///phoneagent.db")
    await store.start_call(call_id, direction="inbound", caller="+4930123", agent="front-desk",
                           started_at=datetime.now(UTC), media="slin16/20ms")
    await store.add_turn(call_id, "caller", "I'd like to book a table",
                         timings=TurnTimings(speech_end_ms=1840.0, endpoint_ms=2040.0))
    await store.finish_call(call_id, ended_at=datetime.now(UTC), end_reason="hangup")
    await store.aclose()
"""

from db.schema import DIRECTIONS, ROLES, CallView, EventView, TurnTimings, TurnView
from db.store import AsyncCallStore, CallStore

__all__ = [
    "DIRECTIONS",
    "ROLES",
    "AsyncCallStore",
    "CallStore",
    "CallView",
    "EventView",
    "TurnTimings",
    "TurnView",
]
