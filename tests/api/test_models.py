"""GET/POST /models: the catalog (adding is admin-only; specs follow registry.catalog's rules)."""

from __future__ import annotations

import json

from api_support import ADMIN, ROOT

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
    r = client.post("/models", json={**NEW, "location": "gmm2d-vp"}, headers=ADMIN)
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


CLASS_SPEC = {"key": "digits-cfg-2", "format": "diffusers", "location": "digits-cfg", "schedule": "from_scheduler_config",
              "prediction": "from_scheduler_config", "sample_shape": [1, 16, 16], "conditioning": "class",
              "num_classes": 10, "null_class": 10, "sha256": "b" * 64}
LATENT_SPEC = {"key": "digits-latent-2", "format": "diffusers", "location": "digits-latent", "schedule": "from_scheduler_config",
               "prediction": "from_scheduler_config", "sample_shape": [4, 8, 8], "image_shape": [1, 32, 32], "sha256": "c" * 64}


def test_admin_adds_a_class_conditional_model_and_jobs_see_its_classes(client):
    r = client.post("/models", json=CLASS_SPEC, headers=ADMIN)
    assert r.status_code == 201, r.text
    spec = client.get("/models/digits-cfg-2", headers=ADMIN).json()["spec"]
    assert (spec["conditioning"], spec["num_classes"], spec["null_class"]) == ("class", 10, 10)
    job = {"model": "digits-cfg-2", "solver": "unipc", "nfe": 5, "options": {"guidance": 2.0}}
    r = client.post("/jobs", json={**job, "options": {"class_labels": [3, 10], "guidance": 2.0}}, headers=ADMIN)
    assert r.status_code == 422 and "[10]" in r.json()["detail"][0]["msg"]
    assert client.post("/jobs", json={**job, "options": {"class_labels": [3, 9], "guidance": 2.0}}, headers=ADMIN).status_code == 201


def test_admin_adds_a_latent_model_with_its_image_shape(client):
    r = client.post("/models", json=LATENT_SPEC, headers=ADMIN)
    assert r.status_code == 201, r.text
    spec = r.json()["spec"]
    assert spec["sample_shape"] == [4, 8, 8] and spec["image_shape"] == [1, 32, 32]
    assert spec["num_classes"] is None and spec["null_class"] is None


def test_the_shipped_catalog_entries_can_be_posted_back(client):
    """Every field of a catalog entry is accepted: posting one back finds the same spec (200, not 422 or 409)."""
    for entry in json.loads((ROOT / "models" / "catalog.json").read_text()):
        r = client.post("/models", json=entry, headers=ADMIN)
        assert r.status_code == 200, (entry["key"], r.text)


def test_class_and_latent_fields_are_checked_naming_the_field(client):
    cases = [({**CLASS_SPEC, "num_classes": None}, "num_classes", "required for class conditioning"),
             ({k: v for k, v in CLASS_SPEC.items() if k != "null_class"}, "null_class", "required for class conditioning"),
             ({**CLASS_SPEC, "null_class": 3}, "null_class", "one of the classes 0..9"),
             ({**CLASS_SPEC, "conditioning": "none"}, "num_classes", "only class-conditional models"),
             ({**NEW, "image_shape": [1, 8, 8]}, "image_shape", "only latent diffusers pipelines"),
             ({**LATENT_SPEC, "image_shape": [1, 0, 32]}, "image_shape", "greater than 0")]
    for body, field, words in cases:
        r = client.post("/models", json=body, headers=ADMIN)
        assert r.status_code == 422, (field, r.text)
        (err,) = r.json()["detail"]
        assert err["loc"][:2] == ["body", field] and field in err["msg"] and words in err["msg"], err
    assert client.get("/models/digits-cfg-2", headers=ADMIN).status_code == 404


def test_a_spec_the_worker_would_refuse_is_a_422_naming_the_field(client):
    """What worker.loaders refuses without reading a file is refused at POST /models."""
    tiny = {"key": "tiny", "format": "safetensors", "location": "tiny.safetensors", "schedule": {"name": "edm"},
            "prediction": "x0", "sample_shape": [1, 8, 8], "architecture": "tiny_conv", "sha256": "a" * 64}
    cases = [({**tiny, "location": "nets/tiny\x00.safetensors"}, "location", "NUL"),
             ({**tiny, "architecture": "resnet9"}, "architecture", "unknown architecture"),
             ({**tiny, "conditioning": "class", "num_classes": 10, "null_class": 10}, "conditioning", "unconditional"),
             ({**tiny, "schedule": {"name": "edm", "sigma_max": 80}}, "schedule", "takes ['T', 't_min']"),
             ({**tiny, "schedule": {"name": "flow", "T": 1.0}}, "schedule", "T < 1"),
             ({**tiny, "sample_shape": [10**9, 8, 8]}, "sample_shape", "less than or equal to 65536"),
             ({**tiny, "sample_shape": [4096, 4096, 8]}, "sample_shape", "too large"),
             ({**NEW, "location": "gmm2d-cosmic"}, "location", "built-in name"),
             ({**NEW, "sample_shape": [64]}, "sample_shape", "samples [2]"),
             ({**NEW, "prediction": "eps", "schedule": {"name": "edm"}}, "prediction", "analytic models predict 'x0'")]
    for body, field, words in cases:
        r = client.post("/models", json=body, headers=ADMIN)
        assert r.status_code == 422, (body, r.text)
        err = r.json()["detail"][0]
        assert err["loc"][:2] == ["body", field] and words in err["msg"], (field, err)
    assert client.post("/models", json=tiny, headers=ADMIN).status_code == 201


def test_an_unknown_guard_feature_map_is_a_422_naming_the_field(client):
    entry = json.loads((ROOT / "models" / "catalog.json").read_text())[0]
    r = client.post("/models", json={**entry, "key": "other", "guard_features": "inception"}, headers=ADMIN)
    assert r.status_code == 422 and "guard_features" in r.text and "unknown feature map" in r.text
