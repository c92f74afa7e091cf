"""Sample business backend (orders, appointment slots, tickets over HTTP JSON): a stand-in for
the CRM/ERP that the example phone agents' webhook tools call in the demo and the tests."""

from __future__ import annotations

from devtools.backend.app import make_app, serving
from devtools.backend.data import seed

__all__ = ["make_app", "seed", "serving"]
