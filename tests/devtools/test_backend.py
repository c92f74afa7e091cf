"""The sample business backend over real HTTP: `serving()` on a seeded SQLite file in tmp_path."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from devtools.backend import seed, serving
from devtools.backend.data import phone_key

MARIA = "5551234567"
FREE = ["S02", "S03", "S05", "S06", "S08"]


async def call(session: aiohttp.ClientSession, method: str, path: str, **kw: Any) -> tuple[int, Any]:
    async with session.request(method, path, **kw) as resp:
        assert resp.content_type == "application/json"
        return resp.status, await resp.json()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "shop.sqlite"


@pytest.fixture
async def api(db: Path) -> AsyncIterator[aiohttp.ClientSession]:
    async with serving(db) as url, aiohttp.ClientSession(url) as session:
        yield session


def dump(db: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(db)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall()
                for t in ("customers", "orders", "slots", "bookings", "tickets")}
    finally:
        conn.close()


# --- seed -------------------------------------------------------------------------------

def test_seed_is_idempotent_and_consistent(db: Path) -> None:
    seed(db)
    first = dump(db)
    seed(db)
    assert dump(db) == first
    assert len(first["customers"]) == 4 and len(first["slots"]) == 8
    assert ("C001", "Maria Lopez", MARIA) in first["customers"]
    booked = {(slot_id, by) for slot_id, _, _, _, by in first["slots"] if by is not None}
    assert booked == {(slot_id, cust) for _, slot_id, cust, _ in first["bookings"]}
    assert first["tickets"] == []


def test_phone_key() -> None:
    assert phone_key("+1 (555) 123-4567") == MARIA
    assert phone_key("555.123.4567") == MARIA
    assert phone_key("1000") == "1000"


async def test_seed_keeps_rows_written_later(db: Path) -> None:
    async with serving(db) as url, aiohttp.ClientSession(url) as session:
        status, _ = await call(session, "POST", "/bookings", json={"phone": MARIA, "slot_id": "S02"})
        assert status == 201
    before = dump(db)
    seed(db)
    assert dump(db) == before


# --- happy paths --------------------------------------------------------------------------

async def test_health(api: aiohttp.ClientSession) -> None:
    assert await call(api, "GET", "/health") == (200, {"ok": True})


async def test_serving_yields_bound_port(db: Path) -> None:
    async with serving(db) as url:
        assert url.startswith("http://127.0.0.1:") and int(url.rsplit(":", 1)[1]) > 0
    assert db.is_file()


@pytest.mark.parametrize("phone", [MARIA, "+1 (555) 123-4567", "15551234567", "555-123-4567"])
async def test_lookup_normalises_phone(api: aiohttp.ClientSession, phone: str) -> None:
    status, body = await call(api, "GET", "/customers/lookup", params={"phone": phone})
    assert status == 200
    assert body == {"found": True, "customer_id": "C001", "name": "Maria Lopez", "open_orders": [
        {"order_id": "4572", "item": "a standing desk", "status": "delayed", "eta": "2026-12-09"}]}


async def test_lookup_unknown_caller(api: aiohttp.ClientSession) -> None:
    assert await call(api, "GET", "/customers/lookup", params={"phone": "1000"}) == (200, {"found": False})


async def test_orders(api: aiohttp.ClientSession) -> None:
    assert await call(api, "GET", "/orders/4572") == (200, {
        "order_id": "4572", "item": "a standing desk", "status": "delayed",
        "carrier": "Northwind Freight", "eta": "2026-12-09",
        "delay_reason": "a storm closed the regional hub", "delivered_on": None,
        "customer_name": "Maria Lopez"})
    status, body = await call(api, "GET", "/orders/3318")
    assert (status, body["status"], body["eta"], body["item"], body["customer_name"]) == (
        200, "shipped", "2026-12-03", "two office chairs", "James Chen")
    status, body = await call(api, "GET", "/orders/7021")
    assert (body["status"], body["delivered_on"], body["eta"]) == ("delivered", "2026-11-27", None)
    status, body = await call(api, "GET", "/orders/5150")
    assert (body["status"], body["eta"], body["customer_name"]) == ("processing", "2026-12-12", "Aisha Khan")


async def test_slots(api: aiohttp.ClientSession) -> None:
    status, body = await call(api, "GET", "/slots")
    assert status == 200
    assert [s["slot_id"] for s in body["slots"]] == FREE
    assert body["slots"][0] == {"slot_id": "S02", "day": "2026-12-07", "time": "14:00",
                                "service": "installation visit"}
    status, body = await call(api, "GET", "/slots", params={"day": "2026-12-08"})
    assert (status, body) == (200, {"slots": [
        {"slot_id": "S03", "day": "2026-12-08", "time": "10:00", "service": "repair visit"}]})
    assert await call(api, "GET", "/slots", params={"day": "2026-12-31"}) == (200, {"slots": []})


async def test_book_list_and_reschedule(api: aiohttp.ClientSession) -> None:
    assert await call(api, "GET", "/bookings", params={"phone": MARIA}) == (200, {"bookings": []})
    status, booking = await call(api, "POST", "/bookings",
                                 json={"phone": "+1 555 123 4567", "slot_id": "S02"})
    assert (status, booking) == (201, {"booking_id": "B004", "slot_id": "S02", "day": "2026-12-07",
                                       "time": "14:00", "service": "installation visit",
                                       "name": "Maria Lopez"})
    _, body = await call(api, "GET", "/slots")
    assert "S02" not in [s["slot_id"] for s in body["slots"]]
    assert await call(api, "GET", "/bookings", params={"phone": MARIA}) == (200, {"bookings": [booking]})

    status, moved = await call(api, "POST", "/bookings/B004/reschedule", json={"slot_id": "S03"})
    assert (status, moved) == (200, {"booking_id": "B004", "slot_id": "S03", "day": "2026-12-08",
                                     "time": "10:00", "service": "repair visit", "name": "Maria Lopez"})
    _, body = await call(api, "GET", "/slots")
    assert [s["slot_id"] for s in body["slots"]] == ["S02", "S05", "S06", "S08"]
    assert await call(api, "GET", "/bookings", params={"phone": MARIA}) == (200, {"bookings": [moved]})
    # the same slot again is a no-op, not a conflict with oneself
    assert await call(api, "POST", "/bookings/B004/reschedule", json={"slot_id": "S03"}) == (200, moved)


async def test_seeded_bookings_listed(api: aiohttp.ClientSession) -> None:
    status, body = await call(api, "GET", "/bookings", params={"phone": "5559876543"})
    assert (status, body) == (200, {"bookings": [{
        "booking_id": "B001", "slot_id": "S01", "day": "2026-12-07", "time": "09:00",
        "service": "installation visit", "name": "James Chen"}]})


async def test_tickets(api: aiohttp.ClientSession, db: Path) -> None:
    assert await call(api, "POST", "/tickets",
                      json={"phone": "+1 (555) 123-4567", "summary": " Call me back about the desk "}
                      ) == (201, {"ticket_id": 1})
    assert await call(api, "POST", "/tickets", json={"phone": "1000", "summary": "x" * 500}) == (
        201, {"ticket_id": 2})
    rows = [row[:4] for row in dump(db)["tickets"]]
    assert rows == [(1, "C001", "15551234567", "Call me back about the desk"),
                    (2, None, "1000", "x" * 500)]


# --- errors -------------------------------------------------------------------------------

async def test_not_found(api: aiohttp.ClientSession) -> None:
    assert await call(api, "GET", "/orders/9999") == (404, {"error": "no order 9999"})
    assert await call(api, "POST", "/bookings", json={"phone": "1000", "slot_id": "S02"}) == (
        404, {"error": "no customer with phone '1000'"})
    assert await call(api, "POST", "/bookings", json={"phone": MARIA, "slot_id": "S99"}) == (
        404, {"error": "no slot S99"})
    assert await call(api, "POST", "/bookings/B999/reschedule", json={"slot_id": "S02"}) == (
        404, {"error": "no booking B999"})
    assert await call(api, "POST", "/bookings/B001/reschedule", json={"slot_id": "S99"}) == (
        404, {"error": "no slot S99"})
    assert await call(api, "GET", "/bookings", params={"phone": "1000"}) == (
        404, {"error": "no customer with phone '1000'"})
    assert await call(api, "GET", "/nowhere") == (404, {"error": "Not Found"})
    assert await call(api, "DELETE", "/orders/4572") == (405, {"error": "Method Not Allowed"})


async def test_conflicts(api: aiohttp.ClientSession) -> None:
    assert (await call(api, "POST", "/bookings", json={"phone": MARIA, "slot_id": "S05"}))[0] == 201
    assert await call(api, "POST", "/bookings", json={"phone": "5550001111", "slot_id": "S05"}) == (
        409, {"error": "slot S05 is already booked"})
    assert await call(api, "POST", "/bookings", json={"phone": MARIA, "slot_id": "S01"}) == (
        409, {"error": "slot S01 is already booked"})
    assert await call(api, "POST", "/bookings/B002/reschedule", json={"slot_id": "S07"}) == (
        409, {"error": "slot S07 is already booked"})
    _, body = await call(api, "GET", "/bookings", params={"phone": "5550001111"})
    assert [b["slot_id"] for b in body["bookings"]] == ["S04"]  # the failed move changed nothing


async def test_concurrent_bookings_of_one_slot_one_wins(api: aiohttp.ClientSession) -> None:
    phones = [MARIA, "5559876543", "5550001111", "5552223333"]
    results = await asyncio.gather(*(call(api, "POST", "/bookings", json={"phone": p, "slot_id": "S08"})
                                     for p in phones))
    assert sorted(status for status, _ in results) == [201, 409, 409, 409]


@pytest.mark.parametrize(("method", "path", "kw", "message"), [
    ("GET", "/slots", {"params": {"day": "12/07/2026"}}, "day must be a date YYYY-MM-DD, got '12/07/2026'"),
    ("GET", "/slots", {"params": {"day": "2026-02-30"}}, "day must be a date YYYY-MM-DD, got '2026-02-30'"),
    ("GET", "/customers/lookup", {}, "phone is required"),
    ("GET", "/customers/lookup", {"params": {"phone": "maria"}}, "phone must contain digits, got 'maria'"),
    ("GET", "/bookings", {}, "phone is required"),
    ("GET", "/orders/45", {}, "order_id must look like 4572, got '45'"),
    ("POST", "/bookings", {"json": {"phone": MARIA}}, "slot_id is required"),
    ("POST", "/bookings", {"json": {"slot_id": "S02"}}, "phone is required"),
    ("POST", "/bookings", {"json": {"phone": 5551234567, "slot_id": "S02"}}, "phone must be a string"),
    ("POST", "/bookings", {"json": {"phone": MARIA, "slot_id": "2"}}, "slot_id must look like S01, got '2'"),
    ("POST", "/bookings", {"json": ["S02"]}, "body must be a JSON object"),
    ("POST", "/bookings", {"data": "{not json"}, "body must be JSON"),
    ("POST", "/bookings/1/reschedule", {"json": {"slot_id": "S02"}}, "booking_id must look like B001, got '1'"),
    ("POST", "/bookings/B001/reschedule", {"json": {}}, "slot_id is required"),
    ("POST", "/bookings/B001/reschedule", {"json": "S02"}, "body must be a JSON object"),
    ("POST", "/tickets", {"json": {"phone": MARIA}}, "summary is required"),
    ("POST", "/tickets", {"json": {"phone": MARIA, "summary": "  "}}, "summary must be 1 to 500 characters, got 0"),
    ("POST", "/tickets", {"json": {"phone": MARIA, "summary": "x" * 501}},
     "summary must be 1 to 500 characters, got 501"),
    ("POST", "/tickets", {"data": "null"}, "body must be a JSON object"),
    ("POST", "/tickets", {}, "body must be JSON"),
])
async def test_bad_input(api: aiohttp.ClientSession, method: str, path: str, kw: dict[str, Any],
                         message: str) -> None:
    assert await call(api, method, path, **kw) == (400, {"error": message})


# --- delay --------------------------------------------------------------------------------

async def test_delay_applies_to_every_request(db: Path) -> None:
    async with serving(db, delay_s=0.2) as url, aiohttp.ClientSession(url) as session:
        for path in ("/health", "/orders/4572", "/orders/0000"):
            t0 = time.monotonic()
            status, _ = await call(session, "GET", path)
            assert time.monotonic() - t0 >= 0.2, path
            assert status in (200, 404)
