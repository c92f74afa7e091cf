"""Free loopback TCP ports for the services tests and benchmarks start (UDP for SIPp: sipcall.py)."""

from __future__ import annotations

import socket


def free_tcp_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at `host` now (the kernel's choice; free again on return)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
