"""Alembic environment for the rating store.

Run programmatically by ``rlli.store.migrate.upgrade`` (which hands over a connection), or by hand:
``.venv/bin/alembic -c db/alembic.ini upgrade head`` / ``revision --autogenerate -m "..."`` (the URL comes
from RLLI_DATABASE_URL, as for the app).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import text

from rlli.store.models import Base

target_metadata = Base.metadata


def _run(connection) -> None:
    context.configure(connection=connection, target_metadata=target_metadata, transactional_ddl=True,
                      render_as_batch=connection.dialect.name == "sqlite", compare_type=True)
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            # one migrator at a time; the lock ends with the transaction
            connection.execute(text("SELECT pg_advisory_xact_lock(8812091)"))
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    from rlli.config import Settings
    from rlli.store.db import connect, writer

    engine = connect(Settings().database_url)
    with writer(engine).connect() as conn:
        _run(conn)
        conn.commit()
    engine.dispose()


if context.is_offline_mode():
    raise SystemExit("offline (--sql) migrations are not supported; run against a database")
run_migrations_online()
