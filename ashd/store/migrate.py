"""Programmatic Alembic: upgrade the schema over a live connection, no alembic.ini.

The script directory is ``migrations/`` next to this module; ``env.py`` there takes
the connection from ``Config.attributes["connection"]``.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy.engine import Connection, Engine

from .engine import WRITE_OPTION

SCRIPT_LOCATION = Path(__file__).resolve().parent / "migrations"
HEAD = "0010"
"""The newest revision; bump together with a new file in ``migrations/versions``."""

# Arbitrary constant: two daemons starting at once must not both run migrations.
_PG_MIGRATION_LOCK = 0x61736864


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic config for ashd's migrations, bound to ``connection`` if given."""
    cfg = Config()
    cfg.set_main_option("script_location", str(SCRIPT_LOCATION))
    cfg.set_main_option("path_separator", "os")
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database to ``revision`` in one transaction (blocking).

    Idempotent: a database already at ``revision`` is left untouched. Concurrent
    callers are serialized (advisory lock on Postgres, ``BEGIN IMMEDIATE`` on SQLite).
    Raises SQLAlchemy/Alembic errors unchanged; the Store wraps them.
    """
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            command.upgrade(alembic_config(conn), revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Migrate down to ``revision`` in one transaction (tests and operators only)."""
    with engine.connect() as conn:
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            command.downgrade(alembic_config(conn), revision)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None if it was never migrated."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()
