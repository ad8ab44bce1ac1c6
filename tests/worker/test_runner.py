"""worker.runner: a job from its row to a schedule version, on SQLite and PostgreSQL.

Jobs run for real on the analytic 2-D mixture (tiny configurations, seconds each); the
conditioning and sample-grid tests run on tiny random diffusers models and on the shipped
``ddpm-digits``.
"""

from __future__ import annotations

import io
import json
import threading

import pytest
import torch
from diffusers import DDPMScheduler
from PIL import Image
from worker_support import (
    MODEL,
    MODEL_SPEC,
    NFE,
    ROOT,
    SOLVER,
    checkpoint_iteration,
    events,
    job,
    submit,
    tiny_options,
    wait_for,
    worker_settings,
)

import ld3core.optimize
from ld3core.heuristics import heuristic
from ld3core.schedules import EDM, RectifiedFlow, VPDiscrete
from registry import jobs as q
from registry import models
from registry import schedules as sq
from registry.catalog import ModelSpec
from registry.db import make_engine, make_session_factory, session_scope
from registry.schemas import JobCreate, JobOptions
from registry.tables import ModelRow
from worker.loaders import load_model, weights_sha256
from worker.runner import (
    PHASES,
    PREVIEW_SEEDS,
    Lease,
    code_version,
    execute,
    job_config,
    job_cost,
    remaining_work,
    state_from_bytes,
    state_to_bytes,
    step_sigmas,
)
from worker.sampling import generate

# Pure pieces.

def test_job_config_carries_every_option_into_ld3core():
    opts = JobOptions(
        teacher_solver="heun", teacher_nfe=31, teacher_heuristic="edm", batch_size=3, n_train=33, n_val=7, n_test=9,
        heuristics=["edm", "logsnr"], starts=2, guard_z=0.5, eval_batch_size=5, loss="l1", mode="lambda",
        decoupled=False, soft=False, gamma=0.004, phase1_epochs=3, phase2_epochs=4, lr_xi=0.02, lr_xic=0.03, lr_x=4.0,
        momentum=0.5, clip=2.0, patience=6, factor=0.7, min_lr_xi=1e-4, min_lr_xic=1e-5, val_every=3, select_on="soft",
        remat=False, val_batch_size=11, seed=42,
    ).model_dump(mode="json")
    cfg = job_config("dpmpp_2m", 6, opts)
    ld3 = cfg.ld3
    assert (ld3.solver, ld3.nfe, ld3.loss, ld3.mode, ld3.decoupled, ld3.soft, ld3.gamma) == ("dpmpp_2m", 6, "l1", "lambda", False, False, 0.004)
    assert (ld3.batch_size, ld3.phase1_epochs, ld3.phase2_epochs, ld3.lr_xi, ld3.lr_xic, ld3.lr_x) == (3, 3, 4, 0.02, 0.03, 4.0)
    assert (ld3.momentum, ld3.clip, ld3.patience, ld3.factor, ld3.min_lr_xi, ld3.min_lr_xic) == (0.5, 2.0, 6, 0.7, 1e-4, 1e-5)
    assert (ld3.val_every, ld3.select_on, ld3.remat, ld3.val_batch_size, ld3.seed) == (3, "soft", False, 11, 42)
    assert (cfg.teacher.solver, cfg.teacher.nfe, cfg.teacher.heuristic) == ("heun", 31, "edm")
    assert (cfg.n_train, cfg.n_val, cfg.n_test, cfg.starts, cfg.guard_z, cfg.batch_size) == (33, 7, 9, 2, 0.5, 5)
    assert cfg.heuristics == ("edm", "logsnr")


def test_job_config_fills_unset_learning_rates_with_the_pixel_or_latent_recipe():
    opts = JobOptions().model_dump(mode="json")
    pixel, latent = job_config("unipc", 5, opts).ld3, job_config("unipc", 5, opts, latent=True).ld3
    assert (pixel.lr_xi, pixel.lr_xic, pixel.phase2_epochs) == (5e-3, 0.1, 5)
    assert (latent.lr_xi, latent.lr_xic, latent.phase2_epochs) == (1e-3, 0.001, 3)


def test_job_config_refuses_an_unknown_stored_option():
    with pytest.raises(ValueError, match="bogus"):
        job_config("unipc", 5, {**JobOptions().model_dump(mode="json"), "bogus": 1})


def test_checkpoint_bytes_round_trip_and_refuse_code():
    state = {"xi": torch.randn(2, 5, dtype=torch.float64), "history": [{"val": [1.0, float("inf")], "lr": None}],
             "iteration": 7, "config": {"solver": "euler"}, "opt": {"v": torch.zeros(3)}}
    back = state_from_bytes(state_to_bytes(state))
    assert torch.equal(back["xi"], state["xi"]) and back["history"] == state["history"]
    assert back["iteration"] == 7 and back["config"] == {"solver": "euler"}

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(Exception, match="[Ww]eights only"):
        state_from_bytes(state_to_bytes({"x": Evil()}))


def test_step_sigmas_are_each_schedules_sampler_sigmas():
    t = torch.tensor([80.0, 1.0, 0.002], dtype=torch.float64)
    assert step_sigmas(EDM(), t) == pytest.approx([80.0, 1.0, 0.002])
    flow = torch.tensor([1.0 - 1e-3, 0.5, 1e-3], dtype=torch.float64)
    assert step_sigmas(RectifiedFlow(), flow) == pytest.approx(flow.tolist())  # flow sigmas live in [0, 1]
    vp = VPDiscrete.linear()
    tv = torch.tensor([1.0, 0.5, vp.t_min], dtype=torch.float64)
    assert step_sigmas(vp, tv) == pytest.approx((vp.sigma(tv) / vp.alpha(tv)).tolist())


# Jobs end to end.

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


def test_the_lease_heartbeats_while_the_job_itself_is_busy_elsewhere(factory, db_url):
    job_id = submit(factory)
    with session_scope(factory) as s:
        first = q.claim_job(s, job_id, worker="w1", stale_after_s=60).heartbeat_at
    with Lease(factory, job_id, "w1", every_s=0.05):
        wait_for(lambda: job(factory, job_id).heartbeat_at > first, 10, "a heartbeat from the lease thread")


def test_the_lease_reports_a_cancel_request_at_its_next_check(factory, db_url):
    job_id = submit(factory)
    with session_scope(factory) as s:
        q.claim_job(s, job_id, worker="w1", stale_after_s=60)
    with Lease(factory, job_id, "w1", every_s=0.05) as lease:
        assert lease.stop_reason() is None
        with session_scope(factory) as s:
            q.request_cancel(s, job_id)
        assert wait_for(lease.stop_reason, 10, "the cancel request to reach the lease") == "cancelled"
    with Lease(factory, job_id, "w2", every_s=0.05) as lease:  # w2 never held it
        assert wait_for(lease.stop_reason, 10, "the lost lease") == "lost"


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


# The ETA: the whole job's remaining work.

def test_the_job_cost_counts_every_phase_and_the_remaining_training_on_resume():
    cfg = job_config(SOLVER, NFE, tiny_options(n_train=20, phase1_epochs=1, phase2_epochs=2))
    cost = job_cost(cfg)
    iterations = 3 * 20 // cfg.ld3.batch_size
    assert cost["teacher"].steps == 20 + cfg.n_val + cfg.n_test and cost["teacher"].per_step == cfg.teacher.nfe
    assert cost["training"].steps == iterations and cost["evaluation"].steps == len(cfg.heuristics) + 1
    assert cost["teacher"].tail > 0 and cost["evaluation"].tail == 0  # heuristic scoring; no sample grid
    whole = remaining_work(cost, "teacher", 0, cost["teacher"].steps)
    assert whole == pytest.approx(sum(c.steps * c.per_step + c.tail for c in cost.values()))
    # Work left only shrinks along the job and ends at zero (or at the sample grid).
    path = [(p, d, cost[p].steps) for p in PHASES for d in range(cost[p].steps + 1)]
    left = [remaining_work(cost, *step) for step in path]
    assert all(a >= b for a, b in zip(left, left[1:])) and left[-1] == 0
    assert remaining_work(job_cost(cfg, preview_samples=16), "evaluation", 9, 9) == 16 * NFE
    # Resumed at iteration 12: the teacher's estimate leaves out the 12 iterations already done.
    resumed = job_cost(cfg, resume_iteration=12)
    assert whole - remaining_work(resumed, "teacher", 0, cost["teacher"].steps) == pytest.approx(12 * cost["training"].per_step)
    # Twice the starts trained side by side: twice the training work.
    double = job_cost(job_config(SOLVER, NFE, tiny_options(n_train=20, phase1_epochs=1, phase2_epochs=2, starts=1)))
    assert cost["training"].per_step == pytest.approx(2 * double["training"].per_step)


def test_the_eta_covers_the_rest_of_the_job_not_only_the_current_phase(sqlite_factory, sqlite_url, monkeypatch):
    writes = []
    real = q.update_progress

    def spy(s, job_id, **kw):
        writes.append(kw)
        return real(s, job_id, **kw)

    monkeypatch.setattr(q, "update_progress", spy)
    job_id = submit(sqlite_factory, n_train=40, eval_batch_size=8)
    assert execute(job_id, session_factory=sqlite_factory, settings=worker_settings(sqlite_url),
                   worker_name="w1") == "succeeded"

    def last(phase):
        return [w for w in writes if w["phase"] == phase][-1]

    # The last report of the teacher and of training: that phase is done, the job is not.
    for phase in ("teacher", "training"):
        end = last(phase)
        assert end["done"] == end["total"] and end["eta_s"] is not None and end["eta_s"] > 0, phase
    end = last("evaluation")
    assert end["done"] == end["total"] and end["eta_s"] == 0  # no sample grid for 2-D samples: nothing left
    assert job(sqlite_factory, job_id).eta_s is None  # a finished job has no ETA


# Conditioning and sample grids on real diffusers models (SQLite only: the database is not the point).

def _image_job(sqlite_url, model_root, spec: dict, options: dict, *, solver="euler", nfe=3):
    """``spec`` in the catalog of a fresh database and one job on it: (factory, settings, job id)."""
    factory_ = make_session_factory(make_engine(sqlite_url))
    with session_scope(factory_) as s:
        models.upsert_model(s, spec)
        small = dict(teacher_nfe=6, n_train=4, n_val=2, n_test=3, batch_size=2, starts=1, heuristics=["logsnr", "edm"])
        row, _ = q.create_job(s, JobCreate(model=spec["key"], solver=solver, nfe=nfe,
                                           options=tiny_options(**{**small, **options})))
        job_id = row.id
    return factory_, worker_settings(sqlite_url, model_root=str(model_root)), job_id


def _tiny_spec(root, name, **kw):
    return {"key": name, "format": "diffusers", "location": name, "schedule": "from_scheduler_config",
            "prediction": "from_scheduler_config", "sample_shape": [1, 8, 8], "sha256": weights_sha256(root / name), **kw}


def test_a_class_conditional_job_draws_its_teacher_pairs_with_the_requested_labels(sqlite_url, tmp_path, tiny_models,
                                                                                    monkeypatch):
    tiny_models.unet_folder(tmp_path, "cfg", DDPMScheduler(num_train_timesteps=1000), num_class_embeds=5)
    spec = _tiny_spec(tmp_path, "cfg", conditioning="class", num_classes=4, null_class=4)
    used = []
    real = ld3core.optimize.teacher_pairs

    def spy(denoiser, spec_, seeds, shape, **kw):
        used.append((list(seeds), kw["cond"].tolist()))
        return real(denoiser, spec_, seeds, shape, **kw)

    monkeypatch.setattr(ld3core.optimize, "teacher_pairs", spy)
    factory_, settings, job_id = _image_job(sqlite_url, tmp_path, spec, {"class_labels": [3, 1], "guidance": 2.0})
    assert execute(job_id, session_factory=factory_, settings=settings, worker_name="w1") == "succeeded"
    assert [len(seeds) for seeds, _ in used] == [4, 2, 3]  # train, val, test
    for seeds, labels in used:
        assert labels == [[3, 1][seed % 2] for seed in seeds]
    with session_scope(factory_) as s:
        assert sq.get_active(s, "cfg", "euler", 3, guidance=2.0).samples_png is not None

    bad = _image_job(sqlite_url, tmp_path, spec, {"class_labels": [7], "seed": 1})
    assert execute(bad[2], session_factory=bad[0], settings=bad[1], worker_name="w1") == "failed"
    assert job(bad[0], bad[2]).error.startswith("ValueError: class_labels: need a non-empty list of labels in 0..3")


def _grid(png: bytes) -> tuple[Image.Image, torch.Tensor]:
    img = Image.open(io.BytesIO(png))
    return img, torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.height, img.width, -1)


def _rows_as_pixels(images: torch.Tensor, scale: int) -> torch.Tensor:
    """One grid row as the PNG holds it: (n, C, H, W) in [-1, 1] -> (H * scale, n * W * scale, C) bytes."""
    n, c, h, w = images.shape
    row = images.permute(2, 0, 3, 1).reshape(h, n * w, c)
    row = ((row + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return row.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


def test_a_ddpm_digits_job_stores_a_grid_of_heuristic_and_learned_samples_from_the_same_seeds(sqlite_url):
    spec = next(m for m in json.loads((ROOT / "models" / "catalog.json").read_text()) if m["key"] == "ddpm-digits")
    # Enough pairs and validations that LD3 moves away from its start (about 5 s).
    options = {"teacher_nfe": 20, "n_train": 16, "n_val": 8, "val_every": 2}
    factory_, settings, job_id = _image_job(sqlite_url, ROOT / "models", spec, options)
    assert execute(job_id, session_factory=factory_, settings=settings, worker_name="w1") == "succeeded"
    with session_scope(factory_) as s:
        row = q.get_job(s, job_id)
        result, png = row.result, sq.get_active(s, "ddpm-digits", "euler", 3).samples_png
    img, pixels = _grid(png)
    n, scale = len(PREVIEW_SEEDS), 64 // 16
    assert img.format == "PNG" and img.mode == "L" and img.size == (n * 16 * scale, 2 * 16 * scale)
    top, bottom = pixels[: img.height // 2], pixels[img.height // 2 :]
    assert not torch.equal(top, bottom)
    # Each row is its schedule's samples of the preview seeds: the best heuristic above, LD3 below.
    loaded = load_model(ModelSpec.from_dict(spec), ROOT / "models")
    best = heuristic(result["best_heuristic"], loaded.schedule, 3)
    learned = (torch.tensor(result["learned_t_steps"], dtype=torch.float64),
               torch.tensor(result["learned_t_model"], dtype=torch.float64))
    for half, (t, tm) in ((top, (best, None)), (bottom, learned)):
        assert torch.equal(half, _rows_as_pixels(generate(loaded, "euler", t, tm, list(PREVIEW_SEEDS)), scale))


def test_a_latent_models_grid_holds_decoded_images_not_latents(sqlite_url, tmp_path, tiny_models):
    tiny_models.latent_pipeline(tmp_path / "latent")
    spec = _tiny_spec(tmp_path, "latent", sample_shape=[4, 4, 4], image_shape=[1, 16, 16])
    factory_, settings, job_id = _image_job(sqlite_url, tmp_path, spec, {})
    assert execute(job_id, session_factory=factory_, settings=settings, worker_name="w1") == "succeeded"
    with session_scope(factory_) as s:
        png = sq.get_active(s, "latent", "euler", 3).samples_png
    img, _ = _grid(png)
    assert img.mode == "L" and img.size == (len(PREVIEW_SEEDS) * 16 * 4, 2 * 16 * 4)  # 16 px images, not 4 px latents
