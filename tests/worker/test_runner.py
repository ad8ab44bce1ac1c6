"""worker.runner: a job from its row to a schedule version, on SQLite and PostgreSQL.

Jobs run for real on the analytic 2-D mixture (tiny configurations, seconds each); the
conditioning test runs on a tiny random diffusers model. The pieces ``execute`` tells the story
with have their own tests: test_options, test_checkpoint, test_lease, test_reporter, test_eta,
test_version, test_preview.
"""

from __future__ import annotations

import threading

import pytest
import torch
from diffusers import DDPMScheduler
from worker_support import (
    MODEL,
    MODEL_SPEC,
    NFE,
    ROOT,
    SOLVER,
    checkpoint_iteration,
    events,
    image_job,
    job,
    submit,
    tiny_spec,
    wait_for,
    worker_settings,
)

import ld3core.optimize
from ld3core.heuristics import heuristic
from registry import jobs as q
from registry import models
from registry import schedules as sq
from registry.catalog import ModelSpec
from registry.db import session_scope
from registry.tables import ModelRow
from worker.loaders import load_model
from worker.options import job_config
from worker.runner import execute
from worker.version import code_version, step_sigmas


def test_a_job_ends_as_a_stored_active_version_with_provenance_and_quality(factory, db_url):
    job_id = submit(factory, seed=3)
    assert execute(job_id, session_factory=factory, settings=worker_settings(db_url), worker_name="w1") == "succeeded"

    row = job(factory, job_id)
    assert row.state == "succeeded" and row.attempts == 1 and row.error is None
    assert row.phase == "evaluation" and row.progress_done == row.progress_total > 0
    assert checkpoint_iteration(factory, job_id) is None  # a finished job keeps no checkpoint
    with session_scope(factory) as s:
        v = sq.get_active(s, MODEL, SOLVER, NFE)
        assert v is not None and v.id == row.schedule_version_id and v.job_id == job_id and v.version == 1
        n = job_config(SOLVER, NFE, row.options).ld3.n_steps + 1
        assert len(v.t_steps) == len(v.t_model) == len(v.sigmas) == len(v.model_timesteps) == n
        assert v.t_steps == row.result["t_steps"] and v.source == row.result["source"]
        assert v.sigmas == pytest.approx(v.t_steps)  # EDM: sigma(t) = t
        assert v.model_timesteps == pytest.approx(v.t_model)  # the analytic model is called with t itself
        assert v.time_space.startswith("edm t in") and v.schedule_config["name"] == "edm"
        assert v.config == job_config(SOLVER, NFE, row.options).to_dict() and v.seed == 3
        assert v.code_version == code_version() and v.code_version.startswith("0.1.0")
        assert len(v.model_sha256) == 64
        qual = v.quality
        best = qual["best_heuristic"]["name"]
        assert qual["n_test"] == 20 and qual["metric"] == "l2" and best in qual["heuristics"]
        assert qual["learned"] == row.result["test"]["ld3"] and qual["best_heuristic"]["mean"] == row.result["test"][best]["mean"]
        assert v.samples_png is None  # 2-D samples are not images
        # The dashboard's plot: learned and every heuristic as N+1 sigmas in the version's units.
        sch = load_model(ModelSpec.from_dict(MODEL_SPEC), ROOT / "models").schedule
        plotted = row.result["step_sigmas"]
        assert list(plotted) == ["ld3", *row.options["heuristics"]]
        assert all(len(sig) == n for sig in plotted.values())
        assert plotted["ld3"] == pytest.approx(step_sigmas(sch, torch.tensor(row.result["learned_t_steps"])))
        for h in row.options["heuristics"]:
            assert plotted[h] == pytest.approx(step_sigmas(sch, heuristic(h, sch, n - 1))), h
        assert plotted[v.source] == pytest.approx(v.sigmas)  # the served schedule is one of the plotted ones

    kinds = [k for k, _, _ in events(factory, job_id)]
    assert kinds[:2] == ["submitted", "started"] and kinds[-1] == "succeeded"
    phases = [d["phase"] for k, _, d in events(factory, job_id) if k == "phase"]
    assert phases == ["teacher", "training", "evaluation"]
    assert len(row.curve) >= 2 and all(p["val_hard"] is not None and p["lr"] is not None for p in row.curve)
    assert [p["iteration"] for p in row.curve] == sorted(p["iteration"] for p in row.curve)


def test_a_finished_or_held_job_is_not_run_twice(factory, db_url):
    job_id = submit(factory)
    settings = worker_settings(db_url)
    with session_scope(factory) as s:
        assert q.claim_job(s, job_id, worker="other", stale_after_s=60) is not None
    assert execute(job_id, session_factory=factory, settings=settings, worker_name="w1") == "skipped"
    assert job(factory, job_id).worker == "other"


def _run_in_thread(**kw) -> tuple[threading.Thread, dict]:
    out: dict = {}
    th = threading.Thread(target=lambda: out.setdefault("outcome", execute(**kw)), daemon=True)
    th.start()
    return th, out


def test_cancellation_stops_the_job_within_its_training(factory, db_url):
    job_id = submit(factory, n_train=200, phase1_epochs=2, phase2_epochs=3)  # 500 iterations
    th, out = _run_in_thread(job_id=job_id, session_factory=factory, settings=worker_settings(db_url), worker_name="w1")
    wait_for(lambda: (r := job(factory, job_id)).phase == "training" and r.progress_done >= 5, 60, "training to start")
    with session_scope(factory) as s:
        q.request_cancel(s, job_id)
    th.join(60)
    row = job(factory, job_id)
    assert out["outcome"] == "cancelled" and row.state == "cancelled"
    assert row.progress_done < row.progress_total / 2  # it stopped, it did not run to its end
    assert row.schedule_version_id is None
    assert [k for k, _, _ in events(factory, job_id)][-2:] == ["cancel_requested", "cancelled"]


def test_cancellation_stops_the_teacher_phase_between_batches(factory, db_url):
    job_id = submit(factory, n_train=2000, teacher_nfe=500, eval_batch_size=16)  # minutes of teacher if not stopped
    th, out = _run_in_thread(job_id=job_id, session_factory=factory, settings=worker_settings(db_url), worker_name="w1")
    wait_for(lambda: (r := job(factory, job_id)).phase == "teacher" and r.progress_done >= 16, 60, "teacher pairs")
    with session_scope(factory) as s:
        q.request_cancel(s, job_id)
    th.join(60)
    row = job(factory, job_id)
    assert out["outcome"] == "cancelled" and row.state == "cancelled" and row.phase == "teacher"


def _interrupted_at_a_checkpoint(factory, db_url, job_id: str, worker: str = "w1") -> int:
    """Run ``job_id`` and stop it (as at shutdown) once a mid-training checkpoint exists."""
    stop = threading.Event()
    th, out = _run_in_thread(job_id=job_id, session_factory=factory, settings=worker_settings(db_url),
                             worker_name=worker, interrupt=stop)
    wait_for(lambda: (checkpoint_iteration(factory, job_id) or 0) > 0, 60, "a mid-training checkpoint")
    stop.set()
    th.join(60)
    assert out["outcome"] == "released"
    return checkpoint_iteration(factory, job_id)


def test_a_resumed_job_learns_bit_for_bit_what_an_uninterrupted_one_learns(factory, db_url):
    options = dict(n_train=60, seed=5)  # 60 iterations
    settings = worker_settings(db_url)
    whole = submit(factory, **options)
    assert execute(whole, session_factory=factory, settings=settings, worker_name="w1") == "succeeded"

    split = submit(factory, **options)
    at = _interrupted_at_a_checkpoint(factory, db_url, split)
    row = job(factory, split)
    assert row.state == "queued" and row.worker is None and 0 < at < row.progress_total
    assert execute(split, session_factory=factory, settings=settings, worker_name="w2") == "succeeded"

    a, b = job(factory, whole), job(factory, split)
    assert b.attempts == 2
    resumed = [d for k, _, d in events(factory, split) if k == "resumed"]
    assert resumed == [{"worker": "w2", "attempt": 2, "iteration": at}]
    for key in ("learned_t_steps", "learned_t_model", "t_steps", "t_model", "test"):
        assert b.result[key] == a.result[key], key
    assert b.result["train"]["iterations"] == a.result["train"]["iterations"]
    # The second run went on from the checkpoint: no validation ran twice, the curves agree.
    assert b.curve == a.curve and len({p["iteration"] for p in b.curve}) == len(b.curve)


def test_cuda_graphs_setting_runs_the_replayable_loop_to_the_same_result(factory, db_url, monkeypatch):
    """LD3_CUDA_GRAPHS reaches train(graphs=True): on the CPU its iterations and validations go through
    ld3core.graphs.Replay (eager, the graph contract checked) and learn what the plain loop learns."""
    import ld3core.graphs

    calls = []
    replay = ld3core.graphs.Replay.__call__
    monkeypatch.setattr(ld3core.graphs.Replay, "__call__", lambda self: calls.append(1) or replay(self))
    plain, graphed = submit(factory, seed=4), submit(factory, seed=4, guard_z=1.6)  # the guard_z: another job, the same learning
    assert execute(plain, session_factory=factory, settings=worker_settings(db_url), worker_name="w1") == "succeeded"
    assert not calls
    settings = worker_settings(db_url, cuda_graphs=True)
    assert execute(graphed, session_factory=factory, settings=settings, worker_name="w1") == "succeeded"
    a, b = job(factory, plain), job(factory, graphed)
    assert len(calls) > b.result["train"]["iterations"]  # every iteration and every validation
    for key in ("learned_t_steps", "learned_t_model", "test"):
        assert b.result[key] == a.result[key], key


def test_a_failed_job_says_why_keeps_its_checkpoint_and_a_retry_resumes_from_it(factory, db_url):
    job_id = submit(factory, n_train=60)
    at = _interrupted_at_a_checkpoint(factory, db_url, job_id)
    with session_scope(factory) as s:  # the catalog entry now names a model that does not exist
        # (written past the catalog's checks, which refuse it: as if the files went missing)
        s.get(ModelRow, MODEL_SPEC["key"]).spec = {**MODEL_SPEC, "location": "gmm2d-nope"}
    assert execute(job_id, session_factory=factory, settings=worker_settings(db_url), worker_name="w2") == "failed"

    row = job(factory, job_id)
    # The worker checks the spec with the catalog's own rules before it loads anything.
    assert row.state == "failed" and row.error.startswith("ValueError: model spec field 'location': ")
    assert checkpoint_iteration(factory, job_id) == at
    tracebacks = [d["traceback"] for k, _, d in events(factory, job_id) if k == "failed" and d]
    assert len(tracebacks) == 1 and "Traceback (most recent call last)" in tracebacks[0]
    assert "ValueError" in tracebacks[0]

    with session_scope(factory) as s:  # the operator fixes the catalog and retries the job
        models.upsert_model(s, MODEL_SPEC)
        q.retry_job(s, job_id)
    assert execute(job_id, session_factory=factory, settings=worker_settings(db_url), worker_name="w3") == "succeeded"
    row = job(factory, job_id)
    assert row.state == "succeeded" and row.error is None and row.attempts == 1
    assert [d for k, _, d in events(factory, job_id) if k == "resumed"][-1] == {"worker": "w3", "attempt": 1, "iteration": at}
    assert checkpoint_iteration(factory, job_id) is None


# Conditioning on a real diffusers model (SQLite only: the database is not the point).

def test_a_class_conditional_job_draws_its_teacher_pairs_with_the_requested_labels(sqlite_url, tmp_path, tiny_models,
                                                                                    monkeypatch):
    tiny_models.unet_folder(tmp_path, "cfg", DDPMScheduler(num_train_timesteps=1000), num_class_embeds=5)
    spec = tiny_spec(tmp_path, "cfg", conditioning="class", num_classes=4, null_class=4)
    used = []
    real = ld3core.optimize.teacher_pairs

    def spy(denoiser, spec_, seeds, shape, **kw):
        used.append((list(seeds), kw["cond"].tolist()))
        return real(denoiser, spec_, seeds, shape, **kw)

    monkeypatch.setattr(ld3core.optimize, "teacher_pairs", spy)
    factory_, settings, job_id = image_job(sqlite_url, tmp_path, spec, {"class_labels": [3, 1], "guidance": 2.0})
    assert execute(job_id, session_factory=factory_, settings=settings, worker_name="w1") == "succeeded"
    assert [len(seeds) for seeds, _ in used] == [4, 2, 3]  # train, val, test
    for seeds, labels in used:
        assert labels == [[3, 1][seed % 2] for seed in seeds]
    with session_scope(factory_) as s:
        assert sq.get_active(s, "cfg", "euler", 3, guidance=2.0).samples_png is not None

    bad = image_job(sqlite_url, tmp_path, spec, {"class_labels": [7], "seed": 1})
    assert execute(bad[2], session_factory=bad[0], settings=bad[1], worker_name="w1") == "failed"
    assert job(bad[0], bad[2]).error.startswith("ValueError: class_labels: need a non-empty list of labels in 0..3")


