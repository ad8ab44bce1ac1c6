"""A database outage: every data route a 503 with Retry-After naming the database; GET /schedules
serves what this process last resolved, marked stale, for LD3_STALE_GRACE_S.

The outage is real on PostgreSQL (the server refuses the test database's connections and ends
the open ones) and simulated on SQLite (``api_support.database_down``)."""

from __future__ import annotations

import pytest
from api_support import ADMIN, database_down
from fastapi.testclient import TestClient
from sqlalchemy.exc import IntegrityError

from api.outage import STALE_HEADER

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


def test_schedules_are_served_stale_from_this_process_during_an_outage(make_client, add_version):
    client = make_client(active_cache_s=0, stale_grace_s=300)  # every request reads the database while it can
    add_version(5)
    add_version(5, promote=False)
    active, pinned = client.get(URL, headers=ADMIN), client.get(f"{URL}?version=2&format=diffusers", headers=ADMIN)
    assert active.status_code == pinned.status_code == 200 and STALE_HEADER not in active.headers
    with database_down(client.app):
        r = client.get(URL, headers=ADMIN)
        assert r.status_code == 200 and r.headers[STALE_HEADER] == "true"
        assert r.content == active.content and r.headers["ETag"] == active.headers["ETag"]
        r = client.get(URL, headers={**ADMIN, "If-None-Match": active.headers["ETag"]})
        assert r.status_code == 304 and r.headers[STALE_HEADER] == "true"
        client.app.state.key_cache.ttl_s = 0  # the key's verification has expired: it was valid within the grace
        r = client.get(f"{URL}?version=2&format=diffusers", headers=ADMIN)
        assert r.status_code == 200 and r.content == pinned.content and r.headers[STALE_HEADER] == "true"
        assert client.get(URL, headers=ADMIN).headers[STALE_HEADER] == "true"
        assert _is_503_naming_the_database(client.get(f"{URL}?format=k-diffusion", headers=ADMIN))  # never rendered here
        assert _is_503_naming_the_database(client.get("/schedules/ddpm-digits/unipc/6", headers=ADMIN))  # never resolved
        assert _is_503_naming_the_database(client.get(URL, headers={"X-API-Key": "ld3_never-seen-key-0123456789"}))
        client.app.state.version_lookup.stale_grace_s = client.app.state.key_cache.stale_grace_s = 0  # the grace is over
        assert _is_503_naming_the_database(client.get(URL, headers=ADMIN))
    r = client.get(URL, headers=ADMIN)
    assert r.status_code == 200 and STALE_HEADER not in r.headers


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_zero_grace_serves_nothing_stale(make_client, add_version):
    client = make_client(active_cache_s=0, stale_grace_s=0)
    add_version(5)
    assert client.get(URL, headers=ADMIN).status_code == 200
    with database_down(client.app):
        assert _is_503_naming_the_database(client.get(URL, headers=ADMIN))
