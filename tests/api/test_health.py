"""/healthz and /readyz against the real database and Redis (and ones that are down), and the
schedule lookup's own connections (drained or unusable)."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from api_support import database_down
from sqlalchemy import event


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_ready_in_embedded_mode_pings_the_database(client):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready",
                        "checks": {"database": "ok", "schedule_lookup": "ok", "broker": "none (embedded runner)"}}


def test_ready_with_the_real_redis_broker(make_client):
    r = make_client(broker_url="redis://127.0.0.1:6379/15").get("/readyz")
    assert r.status_code == 200 and r.json()["checks"]["broker"] == "ok"


def test_a_down_broker_is_a_503_naming_it(make_client):
    r = make_client(broker_url="redis://127.0.0.1:1/0").get("/readyz")
    assert r.status_code == 503
    assert "broker down" in r.json()["detail"] and r.json()["checks"]["database"] == "ok"


def test_a_down_database_is_a_503_naming_it(make_client):
    c = make_client(database_url="postgresql+psycopg://postgres@127.0.0.1:1/none", admin_key=None)
    r = c.get("/readyz")
    assert r.status_code == 503
    assert r.json()["detail"].startswith("not ready: database down")
    assert r.json()["checks"]["database"].startswith("down:")


def test_an_unreachable_database_is_a_503_naming_it_and_the_lookup_pool(client):
    with database_down(client.app):
        r = client.get("/readyz")
        assert r.status_code == 503
        detail = r.json()["detail"]
        assert "database down" in detail and "schedule lookup pool down" in detail
        assert r.json()["checks"]["schedule_lookup"].startswith("down:")
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_drained_lookup_pool_is_a_503_naming_it(client):
    """Every lookup connection held (a leak, or lookups that never end): GET /schedules would
    wait for good, so the process is not ready though the database answers."""
    client.get("/readyz")
    pg = client.app.state.version_lookup._pg
    held = pg.slots
    pg.slots = asyncio.Semaphore(0)  # no slot free
    try:
        r = client.get("/readyz")
    finally:
        pg.slots = held
    assert r.status_code == 503
    assert r.json()["checks"]["database"] == "ok"
    assert r.json()["detail"] == ("not ready: schedule lookup pool down (no connection free within 2 s "
                                  "(4 PostgreSQL connections): pool exhausted)")
    assert client.get("/readyz").status_code == 200


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_unusable_lookup_connection_is_a_503_naming_it(client):
    lookup = client.app.state.version_lookup

    def refuse(*_):
        raise sqlite3.OperationalError("unable to open database file")

    event.listen(lookup.engine, "do_connect", refuse)  # the lookup's own connections only
    try:
        r = client.get("/readyz")
    finally:
        event.remove(lookup.engine, "do_connect", refuse)
    assert r.status_code == 503 and r.json()["checks"]["database"] == "ok"
    assert r.json()["detail"].startswith("not ready: schedule lookup pool down (OperationalError: ")
    assert client.get("/readyz").status_code == 200
