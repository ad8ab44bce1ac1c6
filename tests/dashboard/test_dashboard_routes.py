"""``api/routes/dashboard.py``: the pages and assets, the active-schedule table and one version by
id with its job's step sigmas (against a real SQLite registry, no browser)."""

from __future__ import annotations

import io

import pytest
from dashboard_support import GMM2D_EDM, ROOT
from fastapi.testclient import TestClient
from PIL import Image

from api.main import create_app
from registry import jobs as jq
from registry import keys, models
from registry import schedules as sq
from registry.db import make_engine, make_session_factory, session_scope
from registry.schemas import JobCreate, ScheduleVersionCreate
from registry.settings import Settings


class NoQueue:
    def enqueue(self, job_id: str) -> None:
        raise AssertionError("these tests submit no job")


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (8, 4), 128).save(buf, format="PNG")
    return buf.getvalue()


def _version(png: bytes | None) -> ScheduleVersionCreate:
    sig = [80.0, 5.0, 0.5, 0.02, 0.002]  # EDM: t is sigma
    return ScheduleVersionCreate(
        model_key="gmm2d-edm", solver="euler", nfe=4, t_steps=sig, t_model=sig, time_space="edm t in [0.002, 80]",
        sigmas=sig, model_timesteps=sig, schedule_config={"name": "edm"}, source="ld3", config={}, seed=0,
        code_version="test", val_loss=0.1, samples_png=png,
        quality={"metric": "l2", "source": "ld3", "learned": {"mean": 0.1, "sem": 0.01},
                 "best_heuristic": {"name": "logsnr", "mean": 0.2, "sem": 0.02},
                 "learned_minus_best": {"mean": -0.1, "sem": 0.01}})


STEP_SIGMAS = {"ld3": [80.0, 5.0, 0.5, 0.02, 0.002], "logsnr": [80.0, 6.7, 0.4, 0.03, 0.002]}


def _published_by_a_job(s):
    """A version published by a job run with the guard off, whose result holds the plotted step sigmas."""
    job, _ = jq.create_job(s, JobCreate(model="gmm2d-edm", solver="euler", nfe=4, options={"guard_z": 0}))
    jq.claim_job(s, job.id, worker="w", stale_after_s=60)
    version = _version(None).model_copy(update={"config": {"guard_z": 0.0}})
    return jq.finish_success(s, job.id, version=version, result={"source": "ld3", "step_sigmas": STEP_SIGMAS}, worker="w")


@pytest.fixture
def app_and_keys(sqlite_url):
    url = sqlite_url  # a fresh migrated SQLite file (root conftest)
    engine = make_engine(url)
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        models.upsert_model(s, GMM2D_EDM)
        read = keys.create_key(s, name="reader", scopes=["schedules:read"])[1]
        submit = keys.create_key(s, name="submitter", scopes=["jobs:submit"])[1]
        v1 = sq.create_version(s, _version(_png()))
        v2 = sq.create_version(s, _version(None))
        sq.promote(s, v2.id)
        v3 = _published_by_a_job(s)  # active now
        ids = (v1.id, v2.id, v3.id)
    engine.dispose()
    settings = Settings(database_url=url, broker_url=None, auth_required=True, model_root=str(ROOT / "models"))
    with TestClient(create_app(settings, NoQueue())) as client:
        yield client, {"X-API-Key": read}, {"X-API-Key": submit}, ids


def test_pages_and_assets_are_served_with_a_strict_policy(app_and_keys):
    client, *_ = app_and_keys
    r = client.get("/dashboard", follow_redirects=False)
    assert r.status_code == 307 and r.headers["location"] == "/dashboard/"
    page = client.get("/dashboard/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert '<script type="module" src="/dashboard/js/app.js">' in page.text
    js = client.get("/dashboard/js/app.js")
    assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
    assert client.get("/dashboard/style.css").headers["content-type"].startswith("text/css")


@pytest.mark.parametrize("path", ["/dashboard/nothing.js", "/dashboard/%2e%2e/routes/dashboard.py",
                                  "/dashboard/..%2f..%2fregistry%2fdb.py", "/dashboard/js"])
def test_nothing_outside_the_dashboard_folder_is_served(app_and_keys, path):
    client, *_ = app_and_keys
    assert client.get(path).status_code == 404


def test_the_config_call_needs_no_key(app_and_keys):
    client, *_ = app_and_keys
    assert client.get("/dashboard/api/config").json() == {"auth_required": True}


def test_active_schedules_with_their_quality_and_config(app_and_keys):
    client, read, submit, (_, _, v3) = app_and_keys
    assert client.get("/dashboard/api/schedules", headers=submit).status_code == 403
    rows = client.get("/dashboard/api/schedules", headers=read).json()
    assert [(r["model"], r["solver"], r["nfe"], r["version"], r["version_id"]) for r in rows] == [("gmm2d-edm", "euler", 4, 3, v3)]
    assert rows[0]["quality"]["best_heuristic"]["name"] == "logsnr"
    assert rows[0]["config"] == {"guard_z": 0.0}  # the dashboard marks a version published with the guard off


def test_version_detail_says_whether_it_has_samples_and_carries_its_jobs_step_sigmas(app_and_keys):
    client, read, _, (v1, v2, v3) = app_and_keys
    first = client.get(f"/dashboard/api/versions/{v1}", headers=read).json()
    assert (first["version"], first["active"], first["has_samples"], first["step_sigmas"]) == (1, False, True, None)
    second = client.get(f"/dashboard/api/versions/{v2}", headers=read).json()
    assert (second["version"], second["active"], second["has_samples"], second["step_sigmas"]) == (2, False, False, None)
    third = client.get(f"/dashboard/api/versions/{v3}", headers=read).json()
    assert (third["version"], third["active"], third["job_id"] is not None) == (3, True, True)
    assert third["step_sigmas"] == STEP_SIGMAS
    assert client.get("/dashboard/api/versions/999", headers=read).status_code == 404
