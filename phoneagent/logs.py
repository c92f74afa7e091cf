"""Logging for operations: one JSON object per line, each carrying the call it belongs to.

The call id lives in a context variable the AudioSocket server sets once it has read a call's
UUID; asyncio copies the context into every task the call creates, so a line logged anywhere on
the call's behalf (dialog, engines' callbacks, webhooks) carries it without passing it around.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

from audiosocket.server import CALL_ID

__all__ = ["CALL_ID", "JsonFormatter", "configure"]


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {"ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"), "level": record.levelname,
                "logger": record.name, "msg": record.getMessage()}
        call = CALL_ID.get()
        if call:
            line["call_id"] = call
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False)


def configure(*, verbose: bool, as_json: bool) -> None:
    """The root logger for a command: plain lines for a person at a terminal, JSON for a log
    shipper (journald, Loki, Elasticsearch)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if as_json else logging.Formatter("%(asctime)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, handlers=[handler], force=True)
