"""/healthz and /readyz against the real database and Redis (and ones that are down)."""

from __future__ import annotations


def test_healthz(client):
    assert client.get("/healthz").json() == {"status": "ok"}


def test_ready_in_embedded_mode_pings_the_database(client):
    r = client.get("/readyz")
    assert r.status_code == 200
    assert r.json() == {"status": "ready", "checks": {"database": "ok", "broker": "none (embedded runner)"}}


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
