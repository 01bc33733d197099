"""Schema migrations (Alembic, scripts in ``db/migrations``), applied on start by :meth:`Store.from_settings`.

Concurrent starts are safe: on SQLite the upgrade runs inside a write transaction (BEGIN IMMEDIATE), on
PostgreSQL under a transaction-level advisory lock, so the second process waits and then finds the
schema current.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

from rlli.store.db import StoreError, redact, writer

MIGRATIONS = Path(__file__).resolve().parents[2] / "db" / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as c:
        return MigrationContext.configure(c).get_current_revision()


def upgrade(engine: Engine) -> str:
    """Bring the schema to the newest migration; return that revision."""
    known = {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}
    found = current_revision(engine)
    if found is not None and found not in known:
        raise StoreError(f"the database {redact(engine.url)} is at schema revision {found}, which this code does not "
                         "know (written by a newer version?); update the code or point RLLI_DATABASE_URL elsewhere")
    cfg = alembic_config()
    with writer(engine).connect() as conn:
        cfg.attributes["connection"] = conn
        try:
            command.upgrade(cfg, "head")
        except CommandError as e:
            raise StoreError(f"could not migrate the database {redact(engine.url)}: {e}") from None
        conn.commit()
    return head_revision()
