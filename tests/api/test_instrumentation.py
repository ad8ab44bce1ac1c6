"""/metrics: request counts and latency by route template, jobs by state (prometheus text format)."""

from __future__ import annotations

from api_support import ADMIN
from prometheus_client.parser import text_string_to_metric_families

JOB = {"model": "ddpm-digits", "solver": "unipc", "nfe": 5}


def _samples(client) -> dict[tuple[str, tuple], float]:
    r = client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(r.text) for s in fam.samples}


def test_requests_are_counted_by_route_template_and_status(client):
    job = client.post("/jobs", json=JOB, headers=ADMIN).json()
    client.get(f"/jobs/{job['id']}", headers=ADMIN)
    client.get("/jobs/other", headers=ADMIN)
    client.get("/no/such/path")
    m = _samples(client)
    assert m[("ld3_http_requests_total", (("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "200")))] == 1
    assert m[("ld3_http_requests_total", (("method", "GET"), ("route", "/jobs/{job_id}"), ("status", "404")))] == 1
    assert m[("ld3_http_requests_total", (("method", "GET"), ("route", "<unmatched>"), ("status", "404")))] == 1
    assert m[("ld3_http_request_duration_seconds_count", (("method", "POST"), ("route", "/jobs")))] == 1


def test_jobs_are_counted_by_state(client):
    ids = [client.post("/jobs", json={**JOB, "nfe": n}, headers=ADMIN).json()["id"] for n in (4, 5)]
    client.post(f"/jobs/{ids[0]}/cancel", headers=ADMIN)
    m = _samples(client)
    assert m[("ld3_jobs", (("state", "queued"),))] == 1
    assert m[("ld3_jobs", (("state", "cancelled"),))] == 1
    assert m[("ld3_jobs", (("state", "running"),))] == 0
