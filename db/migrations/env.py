"""Alembic environment: always run on a connection handed in by `db.migrate` (never a URL
from an ini file), so the service, the CLI and the tests upgrade exactly the database they use."""

from __future__ import annotations

from alembic import context

from db.schema import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through db.migrate.upgrade(url), which passes the connection")
# render_as_batch: SQLite cannot ALTER most things; batch mode copies the table instead.
context.configure(connection=connection, target_metadata=Base.metadata,
                  render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
with context.begin_transaction():
    context.run_migrations()
