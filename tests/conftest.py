"""Database fixtures for the whole tree: throwaway PostgreSQL databases (real server) and migrated SQLite files.

PostgreSQL must be reachable (``LD3_TEST_PG_URL``, default the machine's server): the tests that
use it fail, never skip, when it is not. Every database made here is dropped at the end. The
fixtures are lazy: tests that use none of them (ld3core's) need no database.

- ``pg_server_url``: the server URL, checked reachable (session).
- ``make_pg_database``: factory ``make_pg_database(migrate=True) -> url`` of a fresh database (session).
- ``pg_url``: one migrated database for the session; ``pg_engine`` its engine.
- ``pg_session_factory``: a sessionmaker on ``pg_url`` with every table emptied first (per test).
- ``sqlite_url`` / ``sqlite_session_factory``: a fresh migrated SQLite file (per test).
- ``session_factory`` / ``db_url``: a sessionmaker / a URL, parametrized over both backends (per test).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from registry.db import Base, make_engine, make_session_factory, upgrade

PG_SERVER_URL = os.environ.get("LD3_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def _libpq(url: str) -> str:
    """A SQLAlchemy URL as a libpq connection string for psycopg."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    try:
        with psycopg.connect(_libpq(PG_SERVER_URL), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.OperationalError as e:
        pytest.fail(f"PostgreSQL at {PG_SERVER_URL} is unreachable (set LD3_TEST_PG_URL): {e}", pytrace=False)
    return PG_SERVER_URL


@pytest.fixture(scope="session")
def make_pg_database(pg_server_url: str) -> Iterator[Callable[..., str]]:
    made: list[str] = []

    def make(migrate: bool = True) -> str:
        name = f"ld3_test_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(_libpq(pg_server_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        url = make_url(pg_server_url).set(database=name).render_as_string(hide_password=False)
        if migrate:
            upgrade(url)
        return url

    yield make
    with psycopg.connect(_libpq(pg_server_url), autocommit=True) as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_url(make_pg_database: Callable[..., str]) -> str:
    return make_pg_database()


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    engine = make_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def pg_session_factory(pg_engine: Engine) -> sessionmaker[Session]:
    tables = ", ".join(t.name for t in Base.metadata.sorted_tables)
    with pg_engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return make_session_factory(pg_engine)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "ld3.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "ld3.db"
    shutil.copy(_sqlite_template, path)  # the WAL was checkpointed when the migration's engine closed
    return f"sqlite:///{path}"


@pytest.fixture
def sqlite_session_factory(sqlite_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(sqlite_url)
    yield make_session_factory(engine)
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def session_factory(request: pytest.FixtureRequest) -> sessionmaker[Session]:
    name = "sqlite_session_factory" if request.param == "sqlite" else "pg_session_factory"
    return request.getfixturevalue(name)


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest) -> str:
    """A fresh migrated database: a SQLite file, or the session's PostgreSQL database emptied."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    request.getfixturevalue("pg_session_factory")  # truncates every table
    return request.getfixturevalue("pg_url")
