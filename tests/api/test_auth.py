"""API keys and scopes: 401 without a valid key, 403 naming the missing scope."""

from __future__ import annotations

import logging
import time

import pytest
from api_support import ADMIN

from api.auth import KeyCache, Principal
from registry import keys
from registry.db import session_scope

JOB = {"model": "ddpm-digits", "solver": "unipc", "nfe": 5}


@pytest.mark.parametrize("method,path", [("GET", "/jobs"), ("POST", "/jobs"), ("GET", "/models"),
                                          ("GET", "/schedules/ddpm-digits/unipc/5")])
def test_a_missing_key_is_a_401_that_says_where_to_put_one(client, method, path):
    r = client.request(method, path, json=JOB if method == "POST" else None)
    assert r.status_code == 401
    assert "X-API-Key" in r.json()["detail"] and "Bearer" in r.json()["detail"]
    assert "WWW-Authenticate" in r.headers


def test_an_unknown_key_is_a_401(client):
    r = client.get("/jobs", headers={"X-API-Key": "ld3_not-a-key"})
    assert r.status_code == 401 and "unknown or revoked" in r.json()["detail"]


def test_a_revoked_key_is_a_401_once_its_cache_entry_expires(client, factory, key_for):
    header = key_for("schedules:read")
    assert client.get("/jobs", headers=header).status_code == 200
    with session_scope(factory) as s:
        row = keys.verify_key(s, header["X-API-Key"])
        keys.revoke_key(s, row.id)
    assert client.get("/jobs", headers=header).status_code == 200  # verified < KEY_CACHE_TTL_S ago
    client.app.state.key_cache.ttl_s = 0.0
    client.app.state.key_cache.items.clear()
    assert client.get("/jobs", headers=header).status_code == 401


def test_key_cache_entries_expire():
    cache = KeyCache(ttl_s=0.05)
    p = Principal("k", frozenset({"admin"}))
    cache.put("digest", p)
    assert cache.get("digest") is p and cache.get("other") is None
    time.sleep(0.06)
    assert cache.get("digest") is None


def test_while_the_database_is_unreachable_a_key_verified_within_the_grace_passes_marked_stale():
    cache = KeyCache(ttl_s=0.0, stale_grace_s=0.05)
    cache.put("digest", Principal("k", frozenset({"admin"})))
    assert cache.get("digest") is None  # the verification has expired: the database is asked again
    stale = cache.get_stale("digest")
    assert stale == Principal("k", frozenset({"admin"}), stale=True) and cache.get_stale("other") is None
    time.sleep(0.06)
    assert cache.get_stale("digest") is None


def test_unknown_keys_are_not_cached(client):
    client.get("/jobs", headers={"X-API-Key": "ld3_unknown"})
    assert client.app.state.key_cache.items == {}


def test_the_key_may_come_as_a_bearer_token(client, key_for):
    plaintext = key_for("schedules:read")["X-API-Key"]
    assert client.get("/jobs", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 200
    assert client.get("/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_a_read_key_cannot_submit_and_the_403_names_the_scope(client, key_for, queue):
    r = client.post("/jobs", json=JOB, headers=key_for("schedules:read", name="reader"))
    assert r.status_code == 403
    assert "'jobs:submit'" in r.json()["detail"] and "'reader'" in r.json()["detail"]
    assert queue.ids == []


def test_a_submit_key_cannot_promote_or_add_models(client, key_for, add_version):
    add_version(5)
    header = key_for("jobs:submit", "schedules:read")
    r = client.post("/schedules/ddpm-digits/unipc/5/versions/1/promote", headers=header)
    assert r.status_code == 403 and "'admin'" in r.json()["detail"]
    r = client.post("/models", json={"key": "x", "format": "analytic", "location": "gmm2d-edm", "schedule": "builtin",
                                     "prediction": "builtin", "sample_shape": [2]}, headers=header)
    assert r.status_code == 403 and "'admin'" in r.json()["detail"]


def test_a_submit_key_without_read_scope_cannot_read_schedules(client, key_for, add_version):
    add_version(5)
    r = client.get("/schedules/ddpm-digits/unipc/5", headers=key_for("jobs:submit"))
    assert r.status_code == 403 and "'schedules:read'" in r.json()["detail"]


def test_admin_may_do_everything(client, add_version, queue):
    add_version(5)
    assert client.get("/schedules/ddpm-digits/unipc/5", headers=ADMIN).status_code == 200
    assert client.post("/jobs", json=JOB, headers=ADMIN).status_code == 201
    assert len(queue.ids) == 1


def test_with_auth_disabled_every_caller_has_every_scope(make_client, add_version):
    add_version(5)
    c = make_client(auth_required=False, admin_key=None)
    assert c.get("/schedules/ddpm-digits/unipc/5").status_code == 200
    assert c.post("/jobs", json=JOB).status_code == 201
    assert c.post("/schedules/ddpm-digits/unipc/5/versions/1/promote").status_code == 200


def test_health_metrics_and_docs_need_no_key(client):
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert client.get(path).status_code == 200, path


def test_the_start_up_log_says_whether_the_bootstrap_admin_key_is_valid(make_client, caplog):
    caplog.set_level(logging.INFO, logger="api.auth")
    client = make_client()
    assert [r.levelname for r in caplog.records if "bootstrap admin key" in r.message] == ["INFO"]
    assert "is valid" in caplog.text
    (boot,) = [k for k in client.get("/keys", headers=ADMIN).json() if k["name"] == "bootstrap-admin"]
    assert client.delete(f"/keys/{boot['id']}", headers=ADMIN).status_code == 200
    caplog.clear()
    restarted = make_client()  # LD3_ADMIN_KEY still set to the revoked key
    (line,) = [r for r in caplog.records if "bootstrap admin key" in r.message]
    assert line.levelname == "WARNING" and "is valid" not in line.message
    assert "revoked" in line.message and boot["prefix"] in line.message and "LD3_ADMIN_KEY" in line.message
    assert restarted.get("/models", headers=ADMIN).status_code == 401  # a restart does not bring it back
