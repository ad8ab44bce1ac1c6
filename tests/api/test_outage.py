"""A database outage: every data route a 503 with Retry-After naming the database.

The outage is real on PostgreSQL (the server refuses the test database's connections and ends
the open ones) and simulated on SQLite (``api_support.database_down``)."""

from __future__ import annotations

from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from api_support import ADMIN, database_down

URL = "/schedules/ddpm-digits/unipc/5"


def _is_503_naming_the_database(r) -> bool:
    return (r.status_code == 503 and int(r.headers["Retry-After"]) > 0
            and r.json()["detail"].startswith("database unreachable"))


def test_every_data_route_is_a_503_with_retry_after_naming_the_database(client, add_version):
    add_version(5)
    job = client.post("/jobs", json={"model": "ddpm-digits", "solver": "unipc", "nfe": 5}, headers=ADMIN).json()
    with database_down(client.app):
        routes = [("GET", "/jobs"), ("GET", f"/jobs/{job['id']}"), ("POST", f"/jobs/{job['id']}/cancel"),
                  ("POST", "/jobs"), ("GET", "/models"), ("GET", "/models/ddpm-digits"), ("GET", "/keys"),
                  ("GET", f"{URL}/versions"), ("GET", "/schedules/ddpm-digits/unipc/6"),
                  ("POST", f"{URL}/versions/1/promote")]
        for method, path in routes:  # the admin key is in the key cache: each route's own query fails
            body = {"model": "ddpm-digits", "solver": "unipc", "nfe": 6} if path == "/jobs" and method == "POST" else None
            r = client.request(method, path, json=body, headers=ADMIN)
            assert _is_503_naming_the_database(r), (method, path, r.status_code, r.text)
        client.app.state.key_cache.items.clear()  # a key never verified by this process: the key query fails
        assert _is_503_naming_the_database(client.get("/models", headers=ADMIN))
    assert client.get("/models", headers=ADMIN).status_code == 200  # back at once


def test_other_database_errors_keep_their_500(client, monkeypatch):
    from registry import models

    def broken(*_, **__):
        raise IntegrityError("SELECT", {}, Exception("a constraint"))

    monkeypatch.setattr(models, "list_models", broken)
    r = TestClient(client.app, raise_server_exceptions=False).get("/models", headers=ADMIN)
    assert r.status_code == 500
