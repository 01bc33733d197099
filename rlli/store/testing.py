"""Test support: a throw-away PostgreSQL database per test on the server that scripts/postgres.sh starts.

``RLLI_TEST_POSTGRES_URL`` is that server's admin URL; without it the PostgreSQL variants skip with the
reason scripts/postgres.sh gave (``RLLI_TEST_POSTGRES_SKIP_REASON``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

ENGINES: tuple[str, ...] = ("sqlite", "postgresql")


def postgres_skip_reason() -> str | None:
    if os.environ.get("RLLI_TEST_POSTGRES_URL"):
        return None
    why = os.environ.get("RLLI_TEST_POSTGRES_SKIP_REASON") or "RLLI_TEST_POSTGRES_URL is not set"
    return f"no PostgreSQL for the tests ({why}); run them through scripts/test.sh, which sources scripts/postgres.sh"


@contextmanager
def temporary_postgres_database(admin_url: str | None = None) -> Iterator[str]:
    """Create an empty database, yield its URL, drop it (closing leftover connections) afterwards."""
    admin_url = admin_url or os.environ["RLLI_TEST_POSTGRES_URL"]
    name = f"rlli_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            c.execute(text(f'CREATE DATABASE "{name}"'))
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
        with admin.connect() as c:
            c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()


@contextmanager
def database_url(engine: str, folder) -> Iterator[str]:
    """A fresh, empty database of the given engine ("sqlite": a file in ``folder``)."""
    if engine == "sqlite":
        yield f"sqlite:///{folder}/rlli.sqlite3"
    else:
        with temporary_postgres_database() as url:
            yield url
