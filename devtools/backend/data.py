"""SQLite store of the sample business backend: a stand-in for the caller's CRM/ERP.

Every function opens its own short-lived connection, so callers may run them in worker threads
(`asyncio.to_thread`) without sharing a connection across awaits. Writes take an immediate
transaction, so two concurrent bookings of one slot cannot both win.
"""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS customers (
    customer_id TEXT PRIMARY KEY, name TEXT NOT NULL, phone TEXT NOT NULL UNIQUE);
CREATE TABLE IF NOT EXISTS orders (
    order_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL REFERENCES customers(customer_id),
    item TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('processing', 'shipped', 'delayed', 'delivered')),
    carrier TEXT, eta TEXT, delay_reason TEXT, delivered_on TEXT);
CREATE TABLE IF NOT EXISTS slots (
    slot_id TEXT PRIMARY KEY, day TEXT NOT NULL, time TEXT NOT NULL, service TEXT NOT NULL,
    booked_by TEXT REFERENCES customers(customer_id));
CREATE TABLE IF NOT EXISTS bookings (
    booking_id TEXT PRIMARY KEY, slot_id TEXT NOT NULL UNIQUE REFERENCES slots(slot_id),
    customer_id TEXT NOT NULL REFERENCES customers(customer_id), created TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tickets (
    ticket_id INTEGER PRIMARY KEY AUTOINCREMENT, customer_id TEXT REFERENCES customers(customer_id),
    phone TEXT NOT NULL, summary TEXT NOT NULL, created TEXT NOT NULL);
"""

CUSTOMERS = [
    ("C001", "Maria Lopez", "5551234567"),
    ("C002", "James Chen", "5559876543"),
    ("C003", "Aisha Khan", "5550001111"),
    ("C004", "Tom Becker", "5552223333"),
]
ORDERS = [  # order_id, customer_id, item, status, carrier, eta, delay_reason, delivered_on
    ("4572", "C001", "a standing desk", "delayed", "Northwind Freight", "2026-12-09",
     "a storm closed the regional hub", None),
    ("7021", "C001", "a monitor arm", "delivered", "Contoso Parcel", None, None, "2026-11-27"),
    ("3318", "C002", "two office chairs", "shipped", "Contoso Parcel", "2026-12-03", None, None),
    ("5150", "C003", "a filing cabinet", "processing", None, "2026-12-12", None, None),
    ("6604", "C004", "a desk lamp", "delivered", "Contoso Parcel", None, None, "2026-11-20"),
    ("8123", "C004", "a bookshelf", "shipped", "Northwind Freight", "2026-12-05", None, None),
]
SLOTS = [  # slot_id, day, time, service, booked_by
    ("S01", "2026-12-07", "09:00", "installation visit", "C002"),
    ("S02", "2026-12-07", "14:00", "installation visit", None),
    ("S03", "2026-12-08", "10:00", "repair visit", None),
    ("S04", "2026-12-08", "15:30", "installation visit", "C003"),
    ("S05", "2026-12-09", "09:00", "installation visit", None),
    ("S06", "2026-12-10", "11:00", "repair visit", None),
    ("S07", "2026-12-10", "16:00", "installation visit", "C004"),
    ("S08", "2026-12-11", "13:00", "installation visit", None),
]
BOOKINGS = [  # booking_id, slot_id, customer_id, created
    ("B001", "S01", "C002", "2026-11-30T10:15:00+00:00"),
    ("B002", "S04", "C003", "2026-12-01T16:40:00+00:00"),
    ("B003", "S07", "C004", "2026-12-02T08:05:00+00:00"),
]


class NotFound(LookupError):
    """The named customer, order, slot or booking does not exist (HTTP 404)."""


class Conflict(RuntimeError):
    """The request clashes with the current state, e.g. the slot is taken (HTTP 409)."""


def digits(phone: str) -> str:
    return re.sub(r"\D", "", phone)


def phone_key(phone: str) -> str:
    """Last 10 digits: "+1 (555) 123-4567" and "5551234567" name the same caller."""
    return digits(phone)[-10:]


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@contextmanager
def connect(path: Path) -> Iterator[sqlite3.Connection]:
    """A connection that is always closed (a `with sqlite3.connect()` block only commits)."""
    with closing(sqlite3.connect(path, timeout=10, isolation_level=None)) as conn:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA foreign_keys = ON")
        yield conn


@contextmanager
def transaction(path: Path) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE takes the write lock up front, so check-then-write is race free."""
    with connect(path) as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")


def seed(path: Path) -> None:
    """Create the tables and the fixed demo rows; rows already there (and new ones) are kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with connect(path) as conn:
        conn.executescript(SCHEMA)
    with transaction(path) as conn:
        conn.executemany("INSERT OR IGNORE INTO customers VALUES (?, ?, ?)", CUSTOMERS)
        conn.executemany("INSERT OR IGNORE INTO orders VALUES (?, ?, ?, ?, ?, ?, ?, ?)", ORDERS)
        conn.executemany("INSERT OR IGNORE INTO slots VALUES (?, ?, ?, ?, ?)", SLOTS)
        conn.executemany("INSERT OR IGNORE INTO bookings VALUES (?, ?, ?, ?)", BOOKINGS)


def _customer(conn: sqlite3.Connection, phone: str) -> sqlite3.Row | None:
    key = phone_key(phone)
    if not key:
        return None
    row: sqlite3.Row | None = conn.execute(
        "SELECT customer_id, name FROM customers WHERE substr(phone, -10) = ?", (key,)).fetchone()
    return row


def _require_customer(conn: sqlite3.Connection, phone: str) -> sqlite3.Row:
    row = _customer(conn, phone)
    if row is None:
        raise NotFound(f"no customer with phone {phone!r}")
    return row


def lookup_customer(path: Path, phone: str) -> dict[str, Any]:
    with connect(path) as conn:
        row = _customer(conn, phone)
        if row is None:
            return {"found": False}
        orders = conn.execute(
            "SELECT order_id, item, status, eta FROM orders WHERE customer_id = ? "
            "AND status != 'delivered' ORDER BY order_id", (row["customer_id"],)).fetchall()
    return {"found": True, "customer_id": row["customer_id"], "name": row["name"],
            "open_orders": [dict(o) for o in orders]}


def get_order(path: Path, order_id: str) -> dict[str, Any]:
    with connect(path) as conn:
        row = conn.execute(
            "SELECT o.order_id, o.item, o.status, o.carrier, o.eta, o.delay_reason, o.delivered_on,"
            " c.name AS customer_name FROM orders o JOIN customers c USING (customer_id)"
            " WHERE o.order_id = ?", (order_id,)).fetchone()
    if row is None:
        raise NotFound(f"no order {order_id}")
    return dict(row)


def free_slots(path: Path, day: str | None = None) -> list[dict[str, Any]]:
    with connect(path) as conn:
        rows = conn.execute(
            "SELECT slot_id, day, time, service FROM slots WHERE booked_by IS NULL"
            " AND (? IS NULL OR day = ?) ORDER BY day, time, slot_id", (day, day)).fetchall()
    return [dict(r) for r in rows]


def _booking_view(conn: sqlite3.Connection, booking_id: str) -> dict[str, Any]:
    row = conn.execute(
        "SELECT b.booking_id, s.slot_id, s.day, s.time, s.service, c.name FROM bookings b"
        " JOIN slots s USING (slot_id) JOIN customers c ON c.customer_id = b.customer_id"
        " WHERE b.booking_id = ?", (booking_id,)).fetchone()
    return dict(row)


def _take_slot(conn: sqlite3.Connection, slot_id: str, customer_id: str) -> None:
    """Mark the slot booked, or say why not; the caller holds the write transaction."""
    slot = conn.execute("SELECT booked_by FROM slots WHERE slot_id = ?", (slot_id,)).fetchone()
    if slot is None:
        raise NotFound(f"no slot {slot_id}")
    if slot["booked_by"] is not None:
        raise Conflict(f"slot {slot_id} is already booked")
    conn.execute("UPDATE slots SET booked_by = ? WHERE slot_id = ?", (customer_id, slot_id))


def book(path: Path, phone: str, slot_id: str) -> dict[str, Any]:
    with transaction(path) as conn:
        customer = _require_customer(conn, phone)
        _take_slot(conn, slot_id, customer["customer_id"])
        (last,) = conn.execute(
            "SELECT coalesce(max(CAST(substr(booking_id, 2) AS INTEGER)), 0) FROM bookings").fetchone()
        booking_id = f"B{last + 1:03d}"
        conn.execute("INSERT INTO bookings VALUES (?, ?, ?, ?)",
                     (booking_id, slot_id, customer["customer_id"], now_iso()))
        return _booking_view(conn, booking_id)


def reschedule(path: Path, booking_id: str, slot_id: str) -> dict[str, Any]:
    """Move a booking to another free slot and free the old one; the same slot is a no-op."""
    with transaction(path) as conn:
        row = conn.execute("SELECT slot_id, customer_id FROM bookings WHERE booking_id = ?",
                           (booking_id,)).fetchone()
        if row is None:
            raise NotFound(f"no booking {booking_id}")
        if row["slot_id"] != slot_id:
            _take_slot(conn, slot_id, row["customer_id"])
            conn.execute("UPDATE slots SET booked_by = NULL WHERE slot_id = ?", (row["slot_id"],))
            conn.execute("UPDATE bookings SET slot_id = ? WHERE booking_id = ?", (slot_id, booking_id))
        return _booking_view(conn, booking_id)


def bookings_for(path: Path, phone: str) -> list[dict[str, Any]]:
    with connect(path) as conn:
        customer = _require_customer(conn, phone)
        ids = conn.execute(
            "SELECT b.booking_id FROM bookings b JOIN slots s USING (slot_id)"
            " WHERE b.customer_id = ? ORDER BY s.day, s.time", (customer["customer_id"],)).fetchall()
        return [_booking_view(conn, i["booking_id"]) for i in ids]


def create_ticket(path: Path, phone: str, summary: str) -> int:
    """Log a callback request; an unknown caller still gets a ticket, with no customer_id."""
    with transaction(path) as conn:
        customer = _customer(conn, phone)
        cur = conn.execute(
            "INSERT INTO tickets (customer_id, phone, summary, created) VALUES (?, ?, ?, ?)",
            (customer["customer_id"] if customer else None, digits(phone), summary, now_iso()))
        assert cur.lastrowid is not None
        return cur.lastrowid
