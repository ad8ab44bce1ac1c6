"""POST/GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel: submission rules, idempotency, dedupe, enqueue."""

from __future__ import annotations

from api_support import ADMIN, version_data

from registry import jobs as jq
from registry.db import session_scope

JOB = {"model": "ddpm-digits", "solver": "unipc", "nfe": 5, "options": {"n_train": 20, "loss": "l2"}}


def test_submit_stores_a_queued_job_and_enqueues_it_after_commit(client, queue):
    r = client.post("/jobs", json=JOB, headers=ADMIN)
    assert r.status_code == 201
    job = r.json()
    assert job["state"] == "queued" and job["model"] == "ddpm-digits" and job["nfe"] == 5
    assert job["options"]["n_train"] == 20 and job["options"]["loss"] == "l2" and job["options"]["n_val"] == 50
    assert queue.ids == [job["id"]] and queue.committed == [True]


def test_the_same_idempotency_key_and_body_returns_the_same_job(client, queue):
    h = {**ADMIN, "Idempotency-Key": "retry-1"}
    first = client.post("/jobs", json=JOB, headers=h)
    again = client.post("/jobs", json=JOB, headers=h)
    assert first.status_code == 201 and again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert queue.ids == [first.json()["id"]]


def test_the_same_idempotency_key_with_another_body_is_a_409_naming_the_header(client, queue):
    h = {**ADMIN, "Idempotency-Key": "retry-2"}
    first = client.post("/jobs", json=JOB, headers=h).json()
    r = client.post("/jobs", json={**JOB, "nfe": 6}, headers=h)
    assert r.status_code == 409
    (err,) = r.json()["detail"]
    assert err["loc"] == ["header", "Idempotency-Key"]
    assert "Idempotency-Key" in err["msg"] and first["id"] in err["msg"]
    assert queue.ids == [first["id"]]


def test_an_identical_active_job_is_returned_not_duplicated(client, queue):
    first = client.post("/jobs", json=JOB, headers=ADMIN)
    twin = client.post("/jobs", json={**JOB, "options": {"loss": "l2", "n_train": 20, "n_val": 50}}, headers=ADMIN)
    other = client.post("/jobs", json={**JOB, "options": {"n_train": 21, "loss": "l2"}}, headers=ADMIN)
    assert twin.status_code == 200 and twin.json()["id"] == first.json()["id"]  # defaults filled in: the same job
    assert other.status_code == 201 and other.json()["id"] != first.json()["id"]
    assert queue.ids == [first.json()["id"], other.json()["id"]]


def test_a_finished_job_does_not_block_a_new_identical_one(client, queue):
    first = client.post("/jobs", json=JOB, headers=ADMIN).json()
    client.post(f"/jobs/{first['id']}/cancel", headers=ADMIN)
    again = client.post("/jobs", json=JOB, headers=ADMIN)
    assert again.status_code == 201 and again.json()["id"] != first["id"]


def test_an_unknown_model_is_a_422_listing_the_known_ones(client, queue):
    r = client.post("/jobs", json={**JOB, "model": "sd-xl"}, headers=ADMIN)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "model"] and "'sd-xl'" in err["msg"] and "ddpm-digits" in err["msg"]
    assert queue.ids == []


def test_a_heun_nfe_that_leaves_an_evaluation_unused_is_a_422_listing_the_nearest_valid_ones(client, queue):
    r = client.post("/jobs", json={**JOB, "solver": "heun", "nfe": 6}, headers=ADMIN)
    assert r.status_code == 422
    (err,) = r.json()["detail"]
    assert err["loc"] == ["body", "nfe"] and "leave 1 unused" in err["msg"] and "nearest valid NFEs: 5, 7" in err["msg"]
    assert queue.ids == []
    assert client.post("/jobs", json={**JOB, "solver": "heun", "nfe": 7}, headers=ADMIN).status_code == 201


def test_conditioning_must_fit_the_model(client, queue):
    cases = [({"guidance": 3.0}, "guidance", "unconditional"),
             ({"class_labels": [1, 2]}, "class_labels", "not class-conditional"),
             ({"prompts": ["a cat"]}, "prompts", "takes no text prompts")]
    for opts, field, words in cases:
        r = client.post("/jobs", json={**JOB, "options": opts}, headers=ADMIN)
        assert r.status_code == 422, opts
        (err,) = r.json()["detail"]
        assert err["loc"] == ["body", "options", field] and words in err["msg"]
    r = client.post("/jobs", json={"model": "cond-digits", "solver": "unipc", "nfe": 5,
                                   "options": {"class_labels": [3, 12], "guidance": 2.0}}, headers=ADMIN)
    assert r.status_code == 422 and "[12]" in r.json()["detail"][0]["msg"] and "0..9" in r.json()["detail"][0]["msg"]
    ok = client.post("/jobs", json={"model": "cond-digits", "solver": "unipc", "nfe": 5,
                                    "options": {"class_labels": [3, 9], "guidance": 2.0}}, headers=ADMIN)
    assert ok.status_code == 201
    assert queue.ids == [ok.json()["id"]]


def test_a_broker_failure_is_a_503_and_the_job_stays_queued(client, queue, factory):
    queue.fail = ConnectionError("redis down")
    r = client.post("/jobs", json=JOB, headers=ADMIN)
    assert r.status_code == 503 and "redis down" in r.json()["detail"]
    with factory() as s:
        (job,) = jq.list_jobs(s)
        assert job.state == "queued" and job.id in r.json()["detail"]


def test_get_job_shows_progress_events_and_curve(client, factory):
    job_id = client.post("/jobs", json=JOB, headers=ADMIN).json()["id"]
    with session_scope(factory) as s:
        jq.claim_job(s, job_id, worker="w1", stale_after_s=120)
        jq.update_progress(s, job_id, worker="w1", phase="training", done=7, total=70, loss_current=0.5,
                           loss_best=0.4, eta_s=12.0, curve_point={"iteration": 5, "train": 0.6, "val_hard": 0.5,
                                                                   "val_soft": 0.45, "lr": 0.005})
    r = client.get(f"/jobs/{job_id}", headers=ADMIN)
    assert r.status_code == 200
    job = r.json()
    assert job["state"] == "running" and job["worker"] == "w1"
    assert job["progress"] == {**job["progress"], "phase": "training", "done": 7, "total": 70, "loss_current": 0.5,
                               "loss_best": 0.4, "eta_s": 12.0}
    assert job["curve"][-1]["iteration"] == 5
    assert [e["kind"] for e in job["events"]][0] == "submitted"


def test_a_succeeded_job_shows_the_version_it_published_in_the_list_and_alone(client, factory):
    job_id = client.post("/jobs", json=JOB, headers=ADMIN).json()["id"]
    other = client.post("/jobs", json={**JOB, "nfe": 6}, headers=ADMIN).json()["id"]
    served = version_data(5).model_copy(update={"source": "time_uniform", "val_loss": 0.03})
    with session_scope(factory) as s:
        jq.claim_job(s, job_id, worker="w1", stale_after_s=120)
        jq.finish_success(s, job_id, version=served, result={"source": "time_uniform"}, worker="w1")
    listed = {j["id"]: j for j in client.get("/jobs", headers=ADMIN).json()["data"]}
    alone = client.get(f"/jobs/{job_id}", headers=ADMIN).json()
    expected = {"version": 1, "source": "time_uniform", "val_loss": 0.03, "quality": served.quality}
    assert listed[job_id]["published"] == alone["published"] == expected
    assert listed[other]["published"] is None  # queued: nothing published yet


def test_get_unknown_job_is_a_404_naming_it(client):
    r = client.get("/jobs/nope", headers=ADMIN)
    assert r.status_code == 404 and "'nope'" in r.json()["detail"]


def test_list_jobs_filters_and_pages(client, factory):
    ids = [client.post("/jobs", json={**JOB, "nfe": n}, headers=ADMIN).json()["id"] for n in (4, 5, 6)]
    cond = client.post("/jobs", json={"model": "cond-digits", "solver": "unipc", "nfe": 5}, headers=ADMIN).json()["id"]
    client.post(f"/jobs/{ids[0]}/cancel", headers=ADMIN)
    page = client.get("/jobs", headers=ADMIN).json()
    assert len(page["data"]) == 4 and page["limit"] == 50 and page["offset"] == 0
    assert {j["id"] for j in client.get("/jobs?state=cancelled", headers=ADMIN).json()["data"]} == {ids[0]}
    assert {j["id"] for j in client.get("/jobs?model=cond-digits", headers=ADMIN).json()["data"]} == {cond}
    assert {j["id"] for j in client.get("/jobs?model=ddpm-digits&state=queued", headers=ADMIN).json()["data"]} == set(ids[1:])
    first = client.get("/jobs?limit=2", headers=ADMIN).json()["data"]
    rest = client.get("/jobs?limit=2&offset=2", headers=ADMIN).json()["data"]
    assert len(first) == 2 and len(rest) == 2
    assert {j["id"] for j in first + rest} == set(ids) | {cond}
    assert "events" not in first[0] or first[0]["events"] is None


def test_cancel_a_queued_job_at_once_and_again_harmlessly(client):
    job_id = client.post("/jobs", json=JOB, headers=ADMIN).json()["id"]
    r = client.post(f"/jobs/{job_id}/cancel", headers=ADMIN)
    assert r.status_code == 200 and r.json()["state"] == "cancelled"
    again = client.post(f"/jobs/{job_id}/cancel", headers=ADMIN)
    assert again.status_code == 200 and again.json()["state"] == "cancelled"


def test_cancel_a_running_job_requests_it(client, factory):
    job_id = client.post("/jobs", json=JOB, headers=ADMIN).json()["id"]
    with session_scope(factory) as s:
        jq.claim_job(s, job_id, worker="w1", stale_after_s=120)
    r = client.post(f"/jobs/{job_id}/cancel", headers=ADMIN)
    assert r.status_code == 200
    assert r.json()["state"] == "running" and r.json()["cancel_requested"] is True
    assert r.json()["events"][-1]["kind"] == "cancel_requested"


def test_cancel_a_finished_job_is_a_409_and_unknown_a_404(client, factory):
    job_id = client.post("/jobs", json=JOB, headers=ADMIN).json()["id"]
    with session_scope(factory) as s:
        jq.claim_job(s, job_id, worker="w1", stale_after_s=120)
        jq.finish_failure(s, job_id, reason="out of memory", worker="w1")
    r = client.post(f"/jobs/{job_id}/cancel", headers=ADMIN)
    assert r.status_code == 409 and "already failed" in r.json()["detail"]
    assert client.get(f"/jobs/{job_id}", headers=ADMIN).json()["error"] == "out of memory"
    assert client.post("/jobs/nope/cancel", headers=ADMIN).status_code == 404


def test_retry_requeues_a_failed_job_and_refuses_others(client, queue, factory):
    job_id = client.post("/jobs", json=JOB, headers=ADMIN).json()["id"]
    assert client.post(f"/jobs/{job_id}/retry", headers=ADMIN).status_code == 409  # queued, not failed
    with session_scope(factory) as s:
        jq.claim_job(s, job_id, worker="w1", stale_after_s=120)
        jq.save_checkpoint(s, job_id, iteration=10, data=b"state")
        jq.finish_failure(s, job_id, reason="out of memory", worker="w1")
    before = len(queue.ids)
    r = client.post(f"/jobs/{job_id}/retry", headers=ADMIN)
    assert r.status_code == 200
    job = r.json()
    assert job["state"] == "queued" and job["error"] is None
    assert job["events"][-1]["kind"] == "requeued" and "iteration 10" in job["events"][-1]["message"]
    assert queue.ids[before:] == [job_id] and queue.committed[-1] is True
    assert client.post("/jobs/nope/retry", headers=ADMIN).status_code == 404


def test_option_values_the_worker_would_refuse_are_a_422_naming_the_option(client, queue):
    """What LD3Config or JobConfig would refuse, or what would overflow in the worker, is refused at submit."""
    bad = [("lr_x", 1e308), ("lr_x", 10_000.5), ("lr_x", -1.0), ("lr_xi", 1e5), ("lr_xic", 1e300), ("gamma", 11.0),
           ("gamma", -0.1), ("clip", 1e7), ("min_lr_xi", 1e5), ("min_lr_xic", 1e5), ("guard_z", 1e3), ("momentum", 1.0),
           ("factor", 0.0), ("patience", 10**7), ("val_every", 0), ("starts", 5), ("batch_size", 0),
           ("teacher_nfe", 0), ("phase1_epochs", -1), ("n_test", 10**6), ("seed", -1)]
    for field, value in bad:
        r = client.post("/jobs", json={**JOB, "options": {field: value}}, headers=ADMIN)
        assert r.status_code == 422, (field, value, r.text)
        (err,) = r.json()["detail"]
        assert err["loc"] == ["body", "options", field] and err["msg"].startswith(f"options.{field}: "), err
    for raw in ('{"lr_x": Infinity}', '{"gamma": NaN}', '{"lr_xi": 1e999}'):
        body = '{"model": "ddpm-digits", "solver": "unipc", "nfe": 5, "options": ' + raw + "}"
        r = client.post("/jobs", content=body, headers={**ADMIN, "Content-Type": "application/json"})
        assert r.status_code == 422 and r.json()["detail"][0]["loc"][:2] == ["body", "options"], (raw, r.text)
    assert queue.ids == []


def test_a_target_that_cannot_run_the_job_is_a_422_naming_the_option(client, queue):
    """``target``: a stock consumer's limits conflict with an explicit option, or it runs another solver."""
    r = client.post("/jobs", json={**JOB, "solver": "dpmpp_2m", "options": {"target": "diffusers", "decoupled": True}},
                    headers=ADMIN)
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert "decoupled=True conflicts with target 'diffusers', which needs False" in err["msg"], err
    r = client.post("/jobs", json={**JOB, "solver": "unipc", "options": {"target": "comfyui"}}, headers=ADMIN)
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert "options.target: comfyui runs euler, heun, dpmpp_2m as learned here, not unipc" in err["msg"], err
    r = client.post("/jobs", json={**JOB, "options": {"target": "automatic1111"}}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "options", "target"], r.text
    assert queue.ids == []
    r = client.post("/jobs", json={**JOB, "solver": "dpmpp_2m", "options": {"target": "diffusers"}}, headers=ADMIN)
    assert r.status_code in (200, 201, 202), r.text
