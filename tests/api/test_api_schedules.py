"""GET /schedules: active version, ETag/304, ?version=, exports, helpful 404s; versions, promote, rollback."""

from __future__ import annotations

from api_support import ADMIN

URL = "/schedules/ddpm-digits/unipc/5"


def test_the_active_version_comes_with_etag_and_cache_headers(client, add_version, key_for):
    add_version(5)
    r = client.get(URL, headers=key_for("schedules:read"))
    assert r.status_code == 200
    body = r.json()
    assert body["format"] == "raw" and body["version"] == 1 and body["caveats"] == []
    p = body["payload"]
    assert p["model"] == "ddpm-digits" and p["solver"] == "unipc" and p["nfe"] == 5 and len(p["t_steps"]) == 6
    assert p["quality"]["best_heuristic"]["name"] == "logsnr" and p["model_sha256"] == "c" * 64
    assert r.headers["ETag"].startswith('"') and "max-age=30" in r.headers["Cache-Control"]


def test_if_none_match_gives_304_until_a_promotion_changes_the_etag(client, add_version):
    add_version(5)
    etag = client.get(URL, headers=ADMIN).headers["ETag"]
    r = client.get(URL, headers={**ADMIN, "If-None-Match": etag})
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == etag
    assert client.get(URL, headers={**ADMIN, "If-None-Match": '"other", ' + etag}).status_code == 304
    add_version(5)  # version 2, promoted
    r = client.get(URL, headers={**ADMIN, "If-None-Match": etag})
    assert r.status_code == 200 and r.json()["version"] == 2 and r.headers["ETag"] != etag


def test_each_format_has_its_own_etag(client, add_version):
    add_version(5)
    tags = {fmt: client.get(f"{URL}?format={fmt}", headers=ADMIN).headers["ETag"]
            for fmt in ("raw", "diffusers", "k-diffusion", "comfyui")}
    assert len(set(tags.values())) == 4


def test_a_given_version_is_served_immutable(client, add_version):
    add_version(5)
    add_version(5)
    r = client.get(f"{URL}?version=1", headers=ADMIN)
    assert r.status_code == 200 and r.json()["version"] == 1 and "immutable" in r.headers["Cache-Control"]
    assert client.get(URL, headers=ADMIN).json()["version"] == 2


def test_exports_carry_their_caveats(client, add_version):
    add_version(5)
    d = client.get(f"{URL}?format=diffusers", headers=ADMIN).json()
    assert d["format"] == "diffusers"
    assert len(d["payload"]["timesteps"]) == 5 and all(isinstance(t, int) for t in d["payload"]["timesteps"])
    assert d["payload"]["sigmas"][-1] == 0.0 and len(d["payload"]["sigmas"]) == 6
    assert any("integer timesteps" in c for c in d["caveats"]) and any("trailing zero" in c for c in d["caveats"])
    k = client.get(f"{URL}?format=k-diffusion", headers=ADMIN).json()
    assert len(k["payload"]["sigmas"]) == 6 and k["payload"]["sigmas"][-1] == 0.0
    assert any("trailing zero" in c for c in k["caveats"])
    c = client.get(f"{URL}?format=comfyui", headers=ADMIN).json()
    assert c["payload"]["sigmas_text"].endswith(", 0")


def test_an_unknown_format_is_a_422_listing_the_formats(client, add_version):
    add_version(5)
    r = client.get(f"{URL}?format=onnx", headers=ADMIN)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["query", "format"] and "'k-diffusion'" in err["msg"]


def test_a_missing_nfe_is_a_404_listing_the_nfes_that_exist(client, add_version):
    add_version(5)
    add_version(8)
    add_version(10, promote=False)  # stored but never served: not listed
    r = client.get("/schedules/ddpm-digits/unipc/7", headers=ADMIN)
    assert r.status_code == 404
    assert r.json()["available_nfes"] == [5, 8]
    assert "ddpm-digits/unipc/7" in r.json()["detail"] and "[5, 8]" in r.json()["detail"]
    r = client.get("/schedules/ddpm-digits/euler/5", headers=ADMIN)
    assert r.status_code == 404 and r.json()["available_nfes"] == [] and "none" in r.json()["detail"]


def test_a_missing_version_or_model_is_a_404_naming_it(client, add_version):
    add_version(5)
    r = client.get(f"{URL}?version=9", headers=ADMIN)
    assert r.status_code == 404 and "no version 9" in r.json()["detail"] and "versions: [1]" in r.json()["detail"]
    r = client.get("/schedules/sd-xl/unipc/5", headers=ADMIN)
    assert r.status_code == 404 and "unknown model 'sd-xl'" in r.json()["detail"] and "ddpm-digits" in r.json()["detail"]


def test_an_unknown_solver_is_a_422(client):
    r = client.get("/schedules/ddpm-digits/rk45/5", headers=ADMIN)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "solver"]


def test_guidance_selects_its_own_schedule(client, add_version):
    add_version(5, model="cond-digits", guidance=2.0)
    assert client.get("/schedules/cond-digits/unipc/5?guidance=2", headers=ADMIN).json()["payload"]["guidance"] == 2.0
    r = client.get("/schedules/cond-digits/unipc/5", headers=ADMIN)
    assert r.status_code == 404 and r.json()["available_nfes"] == [5]


def test_versions_list_marks_the_active_one(client, add_version):
    add_version(5)
    add_version(5)
    add_version(5, promote=False)
    r = client.get(f"{URL}/versions", headers=ADMIN)
    assert r.status_code == 200
    assert [(v["version"], v["active"]) for v in r.json()] == [(1, False), (2, True), (3, False)]
    assert client.get("/schedules/ddpm-digits/unipc/6/versions", headers=ADMIN).status_code == 404


def test_promote_then_roll_back(client, add_version):
    add_version(5)
    add_version(5, promote=False)
    etag1 = client.get(URL, headers=ADMIN).headers["ETag"]
    r = client.post(f"{URL}/versions/2/promote", headers=ADMIN)
    assert r.status_code == 200 and r.json()["version"] == 2 and r.json()["active"] is True
    assert client.get(URL, headers=ADMIN).json()["version"] == 2
    r = client.post(f"{URL}/versions/1/promote", headers=ADMIN)  # rollback
    assert r.status_code == 200
    after = client.get(URL, headers=ADMIN)
    assert after.json()["version"] == 1 and after.headers["ETag"] == etag1
    assert client.post(f"{URL}/versions/7/promote", headers=ADMIN).status_code == 404
