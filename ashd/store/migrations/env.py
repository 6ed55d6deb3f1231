"""Alembic environment for ashd's store.

Normally run through ``ashd.store.migrate`` with a live connection in
``config.attributes["connection"]``. For ad-hoc ``alembic`` CLI use, set
``sqlalchemy.url`` instead. Offline (SQL script) mode is not supported.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from ashd.store.engine import create_engine_for
from ashd.store.schema import metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite cannot ALTER most things; batch mode rebuilds tables instead.
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def _main() -> None:
    if context.is_offline_mode():
        raise RuntimeError("offline migrations are not supported; pass a connection")
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    engine = create_engine_for(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        _run(conn)
    engine.dispose()


_main()
