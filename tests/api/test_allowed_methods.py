"""api.allowed_methods: OPTIONS and 405 answers name every method a path takes."""

from __future__ import annotations

import re


def concrete(path: str) -> str:
    """An OpenAPI path template with each parameter filled in."""
    return re.sub(r"\{[^}]+\}", "1", path)


def test_options_lists_every_documented_method_of_every_path(client):
    """For each path of the OpenAPI schema, OPTIONS names exactly its operations' methods (and OPTIONS)."""
    spec = client.get("/openapi.json").json()
    for path, ops in spec["paths"].items():
        r = client.options(concrete(path))
        assert r.status_code == 204 and r.content == b"", path
        assert r.headers["allow"] == ", ".join(sorted({m.upper() for m in ops} | {"OPTIONS"})), path
    assert client.options("/jobs").headers["allow"] == "GET, OPTIONS, POST"


def test_a_405_names_every_method_of_the_path(client):
    for url, allow in (("/jobs", "GET, OPTIONS, POST"), ("/models", "GET, OPTIONS, POST"),
                       ("/jobs/abc/cancel", "OPTIONS, POST"), ("/healthz", "GET, OPTIONS")):
        r = client.delete(url)
        assert r.status_code == 405 and r.headers["allow"] == allow and r.json() == {"detail": "Method Not Allowed"}
    assert client.put("/keys/1").headers["allow"] == "DELETE, OPTIONS"


def test_a_path_no_route_takes_is_a_404_whatever_the_method(client):
    assert client.options("/nowhere").status_code == 404
    assert client.delete("/nowhere").status_code == 404


def test_a_cors_preflight_is_still_the_cors_middlewares(make_client):
    client = make_client(cors_origins=["https://ops.example"])
    r = client.options("/jobs", headers={"Origin": "https://ops.example", "Access-Control-Request-Method": "POST"})
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "https://ops.example"
    assert client.options("/jobs").headers["allow"] == "GET, OPTIONS, POST"  # not a preflight: ours
