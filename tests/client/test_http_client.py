"""client.http_client.Client against the app (through FastAPI's TestClient transport)."""

from __future__ import annotations

import pytest
from api_support import ADMIN_KEY

from client.http_client import ApiError, Client, format_detail
from registry import jobs as jq
from registry.db import session_scope


@pytest.fixture
def api(client) -> Client:
    return Client("http://testserver", ADMIN_KEY, http=client)


def test_submit_get_list_cancel(api, queue):
    job = api.submit("ddpm-digits", "unipc", 5, options={"n_train": 10}, idempotency_key="k1")
    assert job["state"] == "queued" and queue.ids == [job["id"]]
    assert api.submit("ddpm-digits", "unipc", 5, options={"n_train": 10}, idempotency_key="k1")["id"] == job["id"]
    assert api.get_job(job["id"])["events"][0]["kind"] == "submitted"
    assert [j["id"] for j in api.list_jobs(state="queued")["data"]] == [job["id"]]
    assert api.cancel(job["id"])["state"] == "cancelled"


def test_errors_carry_the_servers_detail(api):
    with pytest.raises(ApiError) as e:
        api.submit("ddpm-digits", "unipc", 5, options={"n_trian": 3})
    assert e.value.status == 422 and e.value.detail[0]["loc"] == ["body", "options", "n_trian"]
    assert "options.n_trian: unknown field" in str(e.value)
    with pytest.raises(ApiError) as e:
        api.schedule("ddpm-digits", "unipc", 9)
    assert e.value.status == 404 and "ddpm-digits/unipc/9" in str(e.value)


def test_a_wrong_key_is_reported(client):
    with pytest.raises(ApiError) as e:
        Client("http://testserver", "ld3_wrong", http=client).models()
    assert e.value.status == 401


def test_schedule_versions_promote_and_models(api, add_version):
    add_version(5)
    add_version(5, promote=False)
    assert api.schedule("ddpm-digits", "unipc", 5)["version"] == 1
    assert api.schedule("ddpm-digits", "unipc", 5, format="k-diffusion", version=2)["payload"]["sigmas"][-1] == 0.0
    assert [v["active"] for v in api.schedule_versions("ddpm-digits", "unipc", 5)] == [True, False]
    assert api.promote("ddpm-digits", "unipc", 5, 2)["version"] == 2
    assert "ddpm-digits" in {m["key"] for m in api.models()}


def test_wait_returns_the_finished_job_and_reports_each_poll(api, factory):
    job = api.submit("ddpm-digits", "unipc", 5)
    seen = []

    def on_update(j):
        seen.append((j["state"], j["progress"]["done"]))
        if len(seen) == 1:  # a worker takes the job and then fails it between two polls
            with session_scope(factory) as s:
                jq.claim_job(s, job["id"], worker="w", stale_after_s=60)
                jq.update_progress(s, job["id"], worker="w", phase="teacher", done=1, total=4)
        elif len(seen) == 2:
            with session_scope(factory) as s:
                jq.finish_failure(s, job["id"], reason="boom", worker="w")

    final = api.wait(job["id"], on_update=on_update, poll_s=0.01)
    assert final["state"] == "failed" and final["error"] == "boom"
    assert seen == [("queued", 0), ("running", 1), ("failed", 1)]


def test_wait_gives_up_after_its_timeout(api):
    job = api.submit("ddpm-digits", "unipc", 5)
    with pytest.raises(TimeoutError):
        api.wait(job["id"], poll_s=0.01, max_poll_s=0.02, timeout_s=0.1)


def test_format_detail_joins_field_messages():
    assert format_detail([{"loc": ["body", "nfe"], "msg": "nfe: too big"}, {"msg": "x: bad"}]) == "nfe: too big; x: bad"
    assert format_detail("job 'x' not found") == "job 'x' not found"
