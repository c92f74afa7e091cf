"""Alembic migrations of the call log. `db.migrate.upgrade` runs them; nothing else should."""
