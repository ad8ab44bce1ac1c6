"""GET/POST /models: the catalog (adding is admin-only; specs follow worker.catalog's rules)."""

from __future__ import annotations

from api_support import ADMIN

NEW = {"key": "gmm", "format": "analytic", "location": "gmm2d-edm", "schedule": "builtin", "prediction": "builtin",
       "sample_shape": [2], "description": "analytic mixture"}


def test_list_models_shows_the_synced_catalog(client, key_for):
    r = client.get("/models", headers=key_for("schedules:read"))
    assert r.status_code == 200
    by_key = {m["key"]: m for m in r.json()}
    assert by_key["ddpm-digits"]["spec"]["format"] == "diffusers"
    assert client.get("/models/ddpm-digits", headers=ADMIN).json()["spec"]["sample_shape"] == [1, 16, 16]
    assert client.get("/models/none", headers=ADMIN).status_code == 404


def test_admin_adds_a_model_once(client):
    r = client.post("/models", json=NEW, headers=ADMIN)
    assert r.status_code == 201 and r.json()["key"] == "gmm"
    assert client.post("/models", json=NEW, headers=ADMIN).status_code == 200
    r = client.post("/models", json={**NEW, "location": "gmm64-vp"}, headers=ADMIN)
    assert r.status_code == 409 and r.json()["detail"][0]["loc"] == ["body", "key"]
    assert "gmm" in {m["key"] for m in client.get("/models", headers=ADMIN).json()}


def test_a_bad_spec_is_a_422_naming_the_field(client):
    r = client.post("/models", json={**NEW, "format": "diffusers", "location": "../outside", "schedule": "from_scheduler_config",
                                     "prediction": "from_scheduler_config", "sha256": "a" * 64}, headers=ADMIN)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "location"] and "escapes the model root" in err["msg"]
    r = client.post("/models", json={**NEW, "key": "Bad Key"}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "key"]
