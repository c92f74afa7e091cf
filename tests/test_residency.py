"""Data residency: `./dev test` runs this whole suite (Asterisk, PostgreSQL, the browser and
every real call) in a network namespace with only loopback. These tests prove the suite really
ran there, so any code path that needed the network would have failed its own test."""

from __future__ import annotations

import errno
import os
import socket

import pytest

OFFLINE = os.environ.get("PHONEAGENT_OFFLINE") == "1"
pytestmark = pytest.mark.skipif(not OFFLINE, reason="meaningful under ./dev test, which runs the suite offline")


def test_only_loopback_exists() -> None:
    assert [name for _, name in socket.if_nameindex()] == ["lo"]


def test_the_outside_world_is_unreachable() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(2)
        with pytest.raises(OSError) as refused:
            s.connect(("192.0.2.1", 80))  # TEST-NET-1: a host on the internet, as far as routing goes
    assert refused.value.errno == errno.ENETUNREACH
    with pytest.raises(socket.gaierror):
        socket.getaddrinfo("deb.debian.org", 80)


def test_loopback_works() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname(), timeout=2):
            pass
