"""API test fixtures (imported by tests/api/conftest.py and by the client's and the command's): an app per test
on a fresh database (SQLite file and real PostgreSQL).

``db_url`` and the other database fixtures are the root tests/conftest.py's; PostgreSQL must be
reachable: the tests fail, never skip.
``RecordingQueue`` stands in for the broker only to observe what the API enqueues, and checks
from a separate connection that each enqueued job was already committed. Nothing here runs a job.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from api_support import CLASS_MODEL, ROOT, RecordingQueue, settings_for, version_data
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from api.main import create_app
from registry import keys, models
from registry import schedules as sq
from registry.db import make_engine, make_session_factory, session_scope


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    engine = make_engine(db_url)
    f = make_session_factory(engine)
    with session_scope(f) as s:
        models.sync_catalog(s, ROOT / "models" / "catalog.json")
        models.upsert_model(s, CLASS_MODEL)
    yield f
    engine.dispose()


@pytest.fixture
def queue(factory: sessionmaker[Session]) -> RecordingQueue:
    return RecordingQueue(factory)


@pytest.fixture
def make_client(db_url: str, factory: sessionmaker[Session], queue: RecordingQueue) -> Iterator[Callable[..., TestClient]]:
    """``make_client(**settings_overrides)``: a started app (lifespan run) on the test database."""
    opened: list[TestClient] = []

    def make(**overrides: Any) -> TestClient:
        client = TestClient(create_app(settings_for(db_url, **overrides), queue))
        client.__enter__()
        opened.append(client)
        return client

    yield make
    for c in opened:
        c.__exit__(None, None, None)


@pytest.fixture
def client(make_client: Callable[..., TestClient]) -> TestClient:
    return make_client()


@pytest.fixture
def key_for(factory: sessionmaker[Session]) -> Callable[..., dict[str, str]]:
    """``key_for("schedules:read", ...)``: the X-API-Key header of a new key with those scopes."""

    def make(*scopes: str, name: str = "test") -> dict[str, str]:
        with session_scope(factory) as s:
            _, plaintext = keys.create_key(s, name=name, scopes=list(scopes))
        return {"X-API-Key": plaintext}

    return make


@pytest.fixture
def add_version(factory: sessionmaker[Session]) -> Callable[..., int]:
    """``add_version(nfe, promote=True, **kw)``: store a version (and make it active); returns its number."""

    def add(nfe: int = 5, *, promote: bool = True, **kw: Any) -> int:
        with session_scope(factory) as s:
            row = sq.create_version(s, version_data(nfe, **kw))
            if promote:
                sq.promote(s, row.id, actor="test")
            return row.version

    return add
