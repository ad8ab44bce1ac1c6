"""The API against its own OpenAPI schema, property-based: no request may take it down or get an
answer the schema does not document.

For every operation of the live app's schema, hypothesis draws requests from the schema
(``openapi_support``: mostly valid, sometimes junk; with the admin key and without one) and
checks each answer: never a 5xx, a status the operation documents, a JSON body that matches the
documented schema of that status. Each operation also gets one explicit request that gets past
the 4xx (existing ids, a valid body), so that its success bodies are checked too. The budget is
fixed and the run derandomized, so CI sees the same requests every time: about 25 s on one core
for both databases (about 1,000 requests each); each example has a 5 s deadline.
"""

from __future__ import annotations

import json
from datetime import timedelta

from api_support import ADMIN
from hypothesis import HealthCheck, given, settings
from openapi_support import mismatches, requests_for

WITH_KEY, WITHOUT_KEY = 60, 10  # examples per operation, besides the explicit ones below
BUDGET = settings(deadline=timedelta(seconds=5), derandomize=True, database=None,
                  suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large])


def check_answer(spec: dict, path: str, method: str, r) -> None:
    documented = spec["paths"][path][method]["responses"]
    where = f"{method.upper()} {r.request.url} -> {r.status_code}: {r.text[:300]}"
    assert r.status_code < 500, where
    assert str(r.status_code) in documented, f"undocumented status: {where}"
    content = documented[str(r.status_code)].get("content", {})
    if "application/json" in content:
        assert r.headers["content-type"].startswith("application/json"), where
        problems = mismatches(content["application/json"]["schema"], r.json(), spec)
        assert not problems, f"{where}\n{problems}"
    elif content:
        assert r.headers["content-type"].split(";")[0] in {c.split(";")[0] for c in content}, where


def send(client, request: dict, key: dict[str, str]):
    headers = {**request["headers"], **key}
    if request["content"] is not None:
        headers.setdefault("Content-Type", "application/json")
    return client.request(request["method"], request["url"], params=request["params"], headers=headers,
                          content=request["content"], follow_redirects=False)


def explicit_request(spec: dict, path: str, method: str, hints: dict[str, list], bodies: dict) -> dict:
    """The operation's request with every parameter at its first hint and a valid body: the answers past the 4xx."""
    url = path
    for p in spec["paths"][path][method].get("parameters", []):
        if p["in"] == "path":
            url = url.replace("{" + p["name"] + "}", str(hints[p["name"]][0]))
    body = bodies.get((method, path))
    return {"method": method.upper(), "url": url, "params": {}, "headers": {},
            "content": None if body is None else json.dumps(body).encode()}


def test_every_answer_is_documented_and_matches_its_schema(client, add_version):
    spec = client.get("/openapi.json").json()
    # What exists, so that requests reach past the 404s: a schedule version with its samples, a job, the catalog.
    add_version(5)
    job = client.post("/jobs", json={"model": "ddpm-digits", "solver": "unipc", "nfe": 5}, headers=ADMIN).json()
    models = sorted((m["key"] for m in client.get("/models", headers=ADMIN).json()), key=lambda k: k != "ddpm-digits")
    hints = {"model": models, "key": models, "solver": ["unipc"], "nfe": [5], "version": [1], "version_id": [1],
             "job_id": [job["id"]], "format": ["diffusers"], "key_id": [10**6]}
    bodies = {("post", "/jobs"): {"model": "ddpm-digits", "solver": "euler", "nfe": 4,
                                  "options": {"loss": "l2", "lr_x": 1e4, "gamma": 10.0, "heuristics": ["edm", "logsnr"]}},
              ("post", "/models"): {"key": "gmm64", "format": "analytic", "location": "gmm64-edm", "schedule": "builtin",
                                    "prediction": "x0", "sample_shape": [64], "description": "a\u0000b"},
              ("post", "/keys"): {"name": "reader", "scopes": ["schedules:read"]}}
    operations = sorted(((path, method) for path, ops in spec["paths"].items() for method in ops),
                        key=lambda op: op == ("/keys/{key_id}", "delete"))  # revoking keys last
    for path, method in operations:
        for headers in (ADMIN, {}):
            check_answer(spec, path, method, send(client, explicit_request(spec, path, method, hints, bodies), headers))
        for headers, examples in ((ADMIN, WITH_KEY), ({}, WITHOUT_KEY)):
            @settings(BUDGET, max_examples=examples)
            @given(request=requests_for(spec, path, method, hints))
            def answer_is_documented(request: dict) -> None:
                # Called right below, inside this iteration: the loop variables are current.
                check_answer(spec, path, method, send(client, request, headers))  # noqa: B023

            answer_is_documented()
