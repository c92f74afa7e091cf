"""A real PostgreSQL for the call-log tests: one throwaway server per test session (Debian's
binaries, a cluster in a temp dir), a fresh database per test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.postgres import Postgres


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    with Postgres() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """Each backend the service supports: a SQLite file and a PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('sqlite')}/calls.db"
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database()
