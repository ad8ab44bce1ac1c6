"""``GET /auth/me`` (``api/routes/me.py``): the calling key's name and scopes."""

from __future__ import annotations


def test_auth_me_names_the_key_and_its_scopes(client, key_for):
    read, submit = key_for("schedules:read", name="reader"), key_for("jobs:submit", "schedules:read", name="submitter")
    assert client.get("/auth/me", headers=read).json() == {"name": "reader", "scopes": ["schedules:read"]}
    assert client.get("/auth/me", headers=submit).json() == {"name": "submitter", "scopes": ["jobs:submit", "schedules:read"]}


def test_auth_me_needs_a_valid_key(client):
    assert client.get("/auth/me").status_code == 401
    assert client.get("/auth/me", headers={"X-API-Key": "ld3_wrong"}).status_code == 401


def test_auth_me_is_documented_under_auth(client):
    op = client.get("/openapi.json").json()["paths"]["/auth/me"]["get"]
    assert op["tags"] == ["auth"] and "401" in op["responses"]
