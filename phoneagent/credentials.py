"""Secrets for the service: from the environment or a file named by the environment (systemd
credentials, container secrets), never from the repository or the config file's defaults; and
refused when weak where they guard something reachable from other hosts."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from urllib.parse import urlsplit

#: Passwords that ship in examples and guides; never accepted off loopback.
WELL_KNOWN = frozenset({"", "asterisk", "secret", "password", "changeme", "change-me", "admin", "1234", "12345678",
                        "phoneagent", "ari", "test"})
MIN_REMOTE = 16  # characters, for a secret that guards something off this host


class SecretError(ValueError):
    """A secret is missing, unreadable or too weak for where it is used."""


def read(name: str) -> str:
    """$NAME, else the contents of the file $NAME_FILE (trailing newline dropped), else ""."""
    value = os.environ.get(name, "")
    if value:
        return value
    path = os.environ.get(f"{name}_FILE", "")
    if not path:
        return ""
    try:
        return Path(path).read_text().rstrip("\n")
    except OSError as exc:
        raise SecretError(f"{name}_FILE={path}: {exc.strerror or exc}") from None


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check(name: str, value: str, *, where: str) -> str:
    """`value` for use at `where` (a host or a URL): off loopback, a well-known or short secret
    is refused (an attacker on the network tries those first)."""
    host = urlsplit(where).hostname or "" if "://" in where else where
    if not is_loopback(host) and (value.lower() in WELL_KNOWN or len(value) < MIN_REMOTE):
        raise SecretError(f"{name} is too weak for {where}, which is not loopback: use {MIN_REMOTE}+ random characters "
                          f"(e.g. `openssl rand -hex 16`), from the environment or {name}_FILE")
    return value
