"""Engine, sessions and migrations: the same code on PostgreSQL and SQLite.

SQLite (the embedded mode): WAL journal, foreign keys on, a 30 s busy timeout, and every
transaction opened with ``BEGIN IMMEDIATE`` so that two sessions never both read and then
race to write (a deferred SQLite transaction that upgrades to a write after another
connection committed fails with "database is locked"). Writers, and readers while a
transaction is open, take turns; transactions here are short.
"""

from __future__ import annotations

import datetime as dt
import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import JSON, Connection, DateTime, Engine, MetaData, create_engine, event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

import migrations  # the Alembic scripts' package: found from a checkout and from an installed wheel

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent

# Deterministic constraint names: migrations can drop what they created, on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# The database could not be reached, dropped the connection (a restart, a network failure) or
# had none free (a pool timeout): it may answer again in a moment, unlike a refused statement.
# SQLAlchemy's errors, and the drivers' own for the connections ``api.lookup`` holds directly.
DATABASE_UNREACHABLE: tuple[type[Exception], ...] = (
    exc.OperationalError, exc.InterfaceError, exc.DisconnectionError, exc.TimeoutError,
    psycopg.OperationalError, psycopg.InterfaceError, sqlite3.OperationalError, sqlite3.InterfaceError,
)


class UTCDateTime(TypeDecorator[dt.datetime]):
    """A timezone-aware datetime stored in UTC; SQLite keeps it naive, PostgreSQL as timestamptz.

    Binding a naive datetime is an error (its zone is unknown); results are always aware UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value.isoformat()} given; use an aware UTC datetime")
        value = value.astimezone(dt.timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.timezone.utc)
        return value.astimezone(dt.timezone.utc)


def utcnow() -> dt.datetime:
    """The current time, aware, in UTC."""
    return dt.datetime.now(dt.timezone.utc)


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities as None, in nested dicts and lists too: JSON, and so
    PostgreSQL's json columns, have no NaN or infinity. Dict keys become strings, as JSON's are."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class Base(DeclarativeBase):
    """Declarative base of every table (``registry.tables``); JSON for dict/list annotations."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        dt.datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[Any]: JSON(),
    }


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the driver, issue BEGIN (the driver's implicit BEGIN breaks SAVEPOINT).
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def _sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An engine for ``url``. SQLite: parent folder created, WAL, foreign keys, immediate transactions."""
    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return create_engine(url, pool_pre_ping=True, **kwargs)
    if u.database and u.database != ":memory:" and not u.database.startswith("file:"):
        Path(u.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **kwargs)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """Sessions bound to ``engine``; objects stay readable after commit (``expire_on_commit=False``)."""
    return sessionmaker(engine, expire_on_commit=False)


PING_SQL = "SELECT 1"  # also run by ``api.lookup`` on the driver connections it holds itself


def ping(s: Session | Connection) -> None:
    """One round trip to the database; raises what the driver raises if it does not answer."""
    s.execute(text(PING_SQL))


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception, always close."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | None = None) -> Any:
    """Alembic's ``Config`` for this repository's ``migrations/`` (``url`` overrides Settings)."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine_or_url: Engine | str, revision: str = "head") -> None:
    """Run the Alembic migrations up to ``revision`` (default: head) on a URL or an engine."""
    from alembic import command

    if isinstance(engine_or_url, str):
        command.upgrade(alembic_config(engine_or_url), revision)
        return
    cfg = alembic_config(engine_or_url.url.render_as_string(hide_password=False))
    with engine_or_url.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def downgrade(engine_or_url: Engine | str, revision: str = "base") -> None:
    """Run the Alembic migrations down to ``revision`` (default: base, an empty database)."""
    from alembic import command

    if isinstance(engine_or_url, str):
        command.downgrade(alembic_config(engine_or_url), revision)
        return
    cfg = alembic_config(engine_or_url.url.render_as_string(hide_password=False))
    with engine_or_url.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, revision)


__all__ = [
    "DATABASE_UNREACHABLE", "Base", "UTCDateTime", "utcnow", "json_safe", "make_engine", "make_session_factory", "PING_SQL", "ping",
    "session_scope",
    "upgrade", "downgrade", "alembic_config", "MIGRATIONS_DIR",
]
