"""Bring a call-log database to the schema this code expects, with Alembic.

`upgrade(engine)` runs at the store's first use, so the service, the CLI and the tests all
upgrade the database they open, and a new release never meets an old schema. A database made
before migrations existed (tables, no ``alembic_version``) is stamped at 0001, whose schema it
has, then upgraded like any other.
"""

from __future__ import annotations

import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")
BASELINE = "0001"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision this code knows."""
    revision = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert revision is not None, f"no migrations under {MIGRATIONS}"
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision; None for an empty (or pre-migration) database."""
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine) -> tuple[str | None, str]:
    """Upgrade to the newest revision; returns (revision before, revision after)."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:
            # A batch migration copies a table and drops the old one; with foreign keys on,
            # that DROP would cascade into the turns and events of every call. The pragma only
            # takes effect outside a transaction, so set it before the migration's begins.
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            before = MigrationContext.configure(connection).get_current_revision()
            connection.commit()
            with connection.begin():
                tables = set(inspect(connection).get_table_names())
                config = alembic_config(connection)
                if before is None and "calls" in tables:
                    log.info("call log predates migrations: stamping it at %s", BASELINE)
                    command.stamp(config, BASELINE)
                command.upgrade(config, "head")
            after = MigrationContext.configure(connection).get_current_revision()
            connection.commit()
        finally:
            if sqlite:
                connection.exec_driver_sql("PRAGMA foreign_keys=ON")
                connection.commit()
    if before != after:
        log.info("call log schema upgraded from %s to %s", before or "nothing", after)
    assert after is not None
    return before, after
