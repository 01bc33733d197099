"""Connecting to the store: URL checks with clear messages, SQLite's pragmas, PostgreSQL's timeouts.

SQLite (the default) runs in WAL mode with foreign keys on and a busy timeout; write transactions start
with ``BEGIN IMMEDIATE`` (through :func:`writer`) so that concurrent writers queue for the one write lock
instead of failing on a lock upgrade. PostgreSQL runs the same code through psycopg 3.
"""

from __future__ import annotations

import re
from pathlib import Path

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

WRITE_OPTION = "rlli_write"


class StoreError(RuntimeError):
    """A store problem the user can fix (a broken URL, an unreachable server, a newer schema); the message
    says what and how."""


def redact(url: str | URL) -> str:
    """The URL with its password replaced by ***, for messages and logs."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    return re.sub(r"(://[^:/@]*:)[^/?#]*@", r"\1***@", url)


def parse_url(url: str) -> URL:
    """Check a database URL before connecting; PostgreSQL URLs without a driver get psycopg 3."""
    if not url or not url.strip():
        raise StoreError("RLLI_DATABASE_URL is empty; leave it unset for the default SQLite file db/rlli.sqlite3")
    try:
        u = make_url(url.strip())
    except ArgumentError:
        raise StoreError(f"RLLI_DATABASE_URL={redact(url)!r} is not a database URL; expected sqlite:///PATH or "
                         "postgresql+psycopg://USER:PASSWORD@HOST:PORT/DATABASE") from None
    backend = u.get_backend_name()
    if backend == "postgresql":
        if u.drivername in ("postgresql", "postgres"):
            u = u.set(drivername="postgresql+psycopg")
        elif u.drivername != "postgresql+psycopg":
            raise StoreError(f"RLLI_DATABASE_URL uses the driver {u.drivername!r}; this app ships psycopg 3: "
                             "write postgresql+psycopg://...")
        if not u.database:
            raise StoreError(f"RLLI_DATABASE_URL={redact(u)} names no database (…/DATABASE at the end)")
        return u
    if backend == "sqlite":
        if not u.database or u.database == ":memory:" or u.database.startswith("file:"):
            raise StoreError("RLLI_DATABASE_URL must name a SQLite file (sqlite:///path/to/file.sqlite3); an "
                             "in-memory database would lose every rating")
        return u
    raise StoreError(f"RLLI_DATABASE_URL={redact(u)}: the store supports sqlite and postgresql, not {backend!r}")


def _sqlite_engine(u: URL, timeout_s: float) -> Engine:
    path = Path(u.database).expanduser()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise StoreError(f"RLLI_DATABASE_URL: cannot create the folder of the SQLite file {path} ({e})") from None
    engine = create_engine(u.set(database=str(path)), connect_args={"timeout": timeout_s, "check_same_thread": False},
                           pool_size=16, max_overflow=16)
    busy_ms = int(timeout_s * 1000)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (pysqlite's own handling defers it)
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a process crash never loses a commit
        cur.execute(f"PRAGMA busy_timeout={busy_ms}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(WRITE_OPTION) else "BEGIN")

    return engine


def _postgres_engine(u: URL, timeout_s: float) -> Engine:
    return create_engine(u, pool_pre_ping=True, pool_size=16, max_overflow=16,
                         connect_args={"connect_timeout": max(1, int(timeout_s)), "application_name": "rlli"})


def connect(url: str, timeout_s: float = 30.0) -> Engine:
    """An engine for ``url``, checked with a round trip; any failure is a :class:`StoreError` that says why."""
    u = parse_url(url)
    try:
        engine = _sqlite_engine(u, timeout_s) if u.get_backend_name() == "sqlite" else _postgres_engine(u, timeout_s)
    except NoSuchModuleError as e:
        raise StoreError(f"RLLI_DATABASE_URL={redact(u)}: the database driver is not installed ({e})") from None
    try:
        with engine.connect() as c:
            c.execute(text("SELECT 1"))
    except DBAPIError as e:
        engine.dispose()
        cause = str(e.orig).strip().splitlines()[0] if e.orig else str(e)
        raise StoreError(f"cannot open the database RLLI_DATABASE_URL={redact(u)}: {cause}") from None
    return engine


def writer(engine: Engine) -> Engine:
    """The same engine, whose transactions take the write lock at BEGIN (SQLite); unchanged on PostgreSQL."""
    return engine.execution_options(**{WRITE_OPTION: True})
