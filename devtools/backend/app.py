"""HTTP JSON API of the sample business backend, which the example agents' webhook tools call.

Inputs are validated strictly, so a tool-calling LLM that sends a malformed argument gets a 400
with a message naming the field, which it can read back and correct. `delay_s` makes every
request slow, like a real CRM under load, so tests can exercise the agent's waiting behaviour.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from devtools.backend import data

log = logging.getLogger(__name__)

ORDER_ID = re.compile(r"\d{4}")
SLOT_ID = re.compile(r"S\d{2,}")
BOOKING_ID = re.compile(r"B\d{3,}")
DAY = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_SUMMARY = 500


class BadRequest(ValueError):
    """The request itself is malformed (HTTP 400); the message names the offending field."""


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _check_id(value: str, pattern: re.Pattern[str], name: str, example: str) -> str:
    if not pattern.fullmatch(value):
        raise BadRequest(f"{name} must look like {example}, got {value!r}")
    return value


def _check_phone(value: object, name: str = "phone") -> str:
    if value is None or value == "":
        raise BadRequest(f"{name} is required")
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    if not data.digits(value):
        raise BadRequest(f"{name} must contain digits, got {value!r}")
    return value


def _check_day(value: str) -> str:
    try:
        if not DAY.fullmatch(value):
            raise ValueError(value)
        date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"day must be a date YYYY-MM-DD, got {value!r}") from None
    return value


def _string_field(body: dict[str, Any], name: str) -> str:
    if name not in body:
        raise BadRequest(f"{name} is required")
    value = body[name]
    if not isinstance(value, str):
        raise BadRequest(f"{name} must be a string")
    return value


async def _object_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadRequest("body must be JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("body must be a JSON object")
    return body


class _Api:
    """Request handlers; each store call runs in a worker thread on its own connection."""

    def __init__(self, db_path: Path) -> None:
        self.db = db_path

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    async def lookup(self, request: web.Request) -> web.Response:
        phone = _check_phone(request.query.get("phone"))
        return web.json_response(await asyncio.to_thread(data.lookup_customer, self.db, phone))

    async def order(self, request: web.Request) -> web.Response:
        order_id = _check_id(request.match_info["order_id"], ORDER_ID, "order_id", "4572")
        return web.json_response(await asyncio.to_thread(data.get_order, self.db, order_id))

    async def slots(self, request: web.Request) -> web.Response:
        day = request.query.get("day")
        if day is not None:
            _check_day(day)
        return web.json_response({"slots": await asyncio.to_thread(data.free_slots, self.db, day)})

    async def book(self, request: web.Request) -> web.Response:
        body = await _object_body(request)
        phone = _check_phone(_string_field(body, "phone"))
        slot_id = _check_id(_string_field(body, "slot_id"), SLOT_ID, "slot_id", "S01")
        booking = await asyncio.to_thread(data.book, self.db, phone, slot_id)
        return web.json_response(booking, status=201)

    async def reschedule(self, request: web.Request) -> web.Response:
        booking_id = _check_id(request.match_info["booking_id"], BOOKING_ID, "booking_id", "B001")
        body = await _object_body(request)
        slot_id = _check_id(_string_field(body, "slot_id"), SLOT_ID, "slot_id", "S01")
        return web.json_response(await asyncio.to_thread(data.reschedule, self.db, booking_id, slot_id))

    async def bookings(self, request: web.Request) -> web.Response:
        phone = _check_phone(request.query.get("phone"))
        return web.json_response({"bookings": await asyncio.to_thread(data.bookings_for, self.db, phone)})

    async def ticket(self, request: web.Request) -> web.Response:
        body = await _object_body(request)
        phone = _check_phone(_string_field(body, "phone"))
        summary = _string_field(body, "summary").strip()
        if not 1 <= len(summary) <= MAX_SUMMARY:
            raise BadRequest(f"summary must be 1 to {MAX_SUMMARY} characters, got {len(summary)}")
        ticket_id = await asyncio.to_thread(data.create_ticket, self.db, phone, summary)
        return web.json_response({"ticket_id": ticket_id}, status=201)


@web.middleware
async def _json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure, the router's 404/405 included, answers JSON {"error": ...}."""
    try:
        return await handler(request)
    except BadRequest as exc:
        return _error(400, str(exc))
    except data.NotFound as exc:
        return _error(404, str(exc))
    except data.Conflict as exc:
        return _error(409, str(exc))
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return _error(exc.status, exc.reason)
    except Exception:
        log.exception("backend: %s %s failed", request.method, request.path)
        return _error(500, "internal error")


def make_app(db_path: Path, *, delay_s: float = 0.0) -> web.Application:
    """The API over an already seeded SQLite file; `delay_s` is waited before each request."""

    @web.middleware
    async def delay(request: web.Request, handler: Handler) -> web.StreamResponse:
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        return await handler(request)

    api = _Api(Path(db_path))
    app = web.Application(middlewares=[_json_errors, delay])
    app.router.add_get("/health", api.health)
    app.router.add_get("/customers/lookup", api.lookup)
    app.router.add_get("/orders/{order_id}", api.order)
    app.router.add_get("/slots", api.slots)
    app.router.add_post("/bookings", api.book)
    app.router.add_get("/bookings", api.bookings)
    app.router.add_post("/bookings/{booking_id}/reschedule", api.reschedule)
    app.router.add_post("/tickets", api.ticket)
    return app


@asynccontextmanager
async def serving(db_path: Path, host: str = "127.0.0.1", port: int = 0, *,
                  delay_s: float = 0.0) -> AsyncIterator[str]:
    """Serve the backend (seeding a missing DB) and yield its base URL, with the bound port."""
    db_path = Path(db_path)
    if not db_path.exists():
        await asyncio.to_thread(data.seed, db_path)
    runner = web.AppRunner(make_app(db_path, delay_s=delay_s), access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        bound = runner.addresses[0][1]
        url_host = f"[{host}]" if ":" in host else host
        yield f"http://{url_host}:{bound}"
    finally:
        await runner.cleanup()


async def _serve_forever(args: argparse.Namespace) -> None:
    async with serving(args.db, args.host, args.port, delay_s=args.delay_ms / 1000) as url:
        print(f"backend: serving {url} (db {args.db}); Ctrl-C stops", flush=True)
        await asyncio.Event().wait()


def _main(args: argparse.Namespace) -> int:
    try:
        asyncio.run(_serve_forever(args))
    except KeyboardInterrupt:
        pass
    return 0


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `backend` on the main CLI: `python -m devtools backend --db PATH ...`."""
    p = subparsers.add_parser("backend", help="serve the sample business backend (HTTP JSON)")
    p.add_argument("--db", type=Path, required=True, help="SQLite file; seeded if missing")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8900, help="port to listen on (0: any free)")
    p.add_argument("--delay-ms", type=int, default=0, help="wait this long before each answer")
    p.set_defaults(func=_main)
