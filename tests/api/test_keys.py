"""/keys: admins create (plaintext once), list (never a hash) and revoke API keys."""

from __future__ import annotations

import hashlib

from api_support import ADMIN


def test_admin_creates_a_key_that_works_for_its_scopes_only(client):
    r = client.post("/keys", json={"name": "ci", "scopes": ["schedules:read", "jobs:submit"]}, headers=ADMIN)
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["key"].startswith("ld3_") and body["prefix"] == body["key"][:8]
    assert (body["name"], body["scopes"], body["revoked_at"]) == ("ci", ["schedules:read", "jobs:submit"], None)
    new = {"X-API-Key": body["key"]}
    assert client.get("/models", headers=new).status_code == 200
    assert client.get("/jobs", headers={"Authorization": f"Bearer {body['key']}"}).status_code == 200
    r = client.get("/keys", headers=new)
    assert r.status_code == 403 and "'admin'" in r.json()["detail"]


def test_listing_shows_every_key_without_hash_or_plaintext(client, key_for):
    created = client.post("/keys", json={"name": "reader", "scopes": ["schedules:read"]}, headers=ADMIN).json()
    r = client.get("/keys", headers=ADMIN)
    assert r.status_code == 200
    listed = r.json()
    assert [k["name"] for k in listed] == ["bootstrap-admin", "reader"]
    assert all(set(k) == {"id", "name", "prefix", "scopes", "created_at", "revoked_at"} for k in listed)
    digest = hashlib.sha256(created["key"].encode()).hexdigest()
    assert created["key"] not in r.text and digest not in r.text


def test_only_admins_manage_keys(client, key_for):
    submit = key_for("schedules:read", "jobs:submit")
    assert client.post("/keys", json={"name": "x", "scopes": ["admin"]}, headers=submit).status_code == 403
    assert client.get("/keys", headers=submit).status_code == 403
    assert client.delete("/keys/1", headers=submit).status_code == 403
    assert client.get("/keys").status_code == 401
    assert [k["name"] for k in client.get("/keys", headers=ADMIN).json()] == ["bootstrap-admin", "test"]


def test_a_bad_key_request_is_a_422_naming_the_field(client):
    cases = [({"name": "x", "scopes": ["root"]}, ["body", "scopes", 0]),
             ({"name": "x", "scopes": ["admin", "admin"]}, ["body", "scopes"]),
             ({"name": "x", "scopes": []}, ["body", "scopes"]),
             ({"name": "", "scopes": ["admin"]}, ["body", "name"]),
             ({"name": "x", "scopes": ["admin"], "key": "ld3_mine"}, ["body", "key"])]
    for body, loc in cases:
        r = client.post("/keys", json=body, headers=ADMIN)
        assert r.status_code == 422, body
        err = r.json()["detail"][0]
        assert err["loc"] == loc and ".".join(map(str, loc[1:])) in err["msg"], (body, err)
    assert len(client.get("/keys", headers=ADMIN).json()) == 1


def test_a_revoked_key_stops_working_at_once_in_this_process(client):
    """The key is verified (and so cached for KEY_CACHE_TTL_S) before it is revoked: the next call is a 401."""
    created = client.post("/keys", json={"name": "leaked", "scopes": ["schedules:read"]}, headers=ADMIN).json()
    leaked = {"X-API-Key": created["key"]}
    assert client.get("/models", headers=leaked).status_code == 200
    assert client.app.state.key_cache.get(hashlib.sha256(created["key"].encode()).hexdigest()) is not None
    revoked = client.delete(f"/keys/{created['id']}", headers=ADMIN)
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None and revoked.json()["name"] == "leaked"
    r = client.get("/models", headers=leaked)
    assert r.status_code == 401 and "revoked" in r.json()["detail"]
    again = client.delete(f"/keys/{created['id']}", headers=ADMIN)
    assert again.status_code == 200 and again.json()["revoked_at"] == revoked.json()["revoked_at"]
    assert client.get("/models", headers=ADMIN).status_code == 200


def test_revoking_an_unknown_key_is_a_404_naming_the_id(client):
    r = client.delete("/keys/999", headers=ADMIN)
    assert r.status_code == 404 and "999" in r.json()["detail"] and "key_id" in r.json()["detail"]
    r = client.delete("/keys/abc", headers=ADMIN)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "key_id"]
    assert client.delete(f"/keys/{2**31}", headers=ADMIN).status_code == 422


def test_a_key_name_with_a_nul_character_is_a_422_naming_it(client):
    """PostgreSQL text cannot hold a NUL: this was a 500 there (and stored as given on SQLite)."""
    r = client.post("/keys", json={"name": "ci\u0000", "scopes": ["admin"]}, headers=ADMIN)
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "name"] and err["msg"] == "name: must not contain a NUL character"
    assert len(client.get("/keys", headers=ADMIN).json()) == 1
