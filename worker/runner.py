"""The task body: run one LD3 job from its row in the registry to a schedule version.

``execute`` is the same under Celery and in the embedded runner. It claims the job (an atomic
UPDATE: a second delivery of the same job finds it taken and does nothing), loads the catalog
model, runs ``ld3core.optimize.run_job`` and persists what the loop reports:

- progress at most every ``settings.progress_every_s`` and at every phase change and
  validation (with a curve point), with the ETA of the whole job (see ``job_cost``);
- a heartbeat from a daemon thread, so that a job blocked in a long call (the teacher, a
  slow device) still shows it is alive; the same call tells whether cancellation was
  requested or the lease was lost (another worker took over a job it thought dead);
- the LD3 state (``torch.save`` bytes, tensors and plain values only) at most every
  ``settings.checkpoint_every_s``, at every epoch end and when stopping; a job that is picked
  up again resumes from it bit for bit (the teacher pairs are recomputed from their seeds).

Outcomes: a new immutable schedule version with its provenance and quality (succeeded);
cancelled; failed with a reason a person can read (the traceback goes to an event; the
registry keeps the checkpoint, so that ``registry.jobs.retry_job`` resumes the job); released
(the worker is shutting down: queued again, checkpointed); or untouched (the lease was lost:
another worker holds the job).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import io
import json
import logging
import math
import subprocess
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from ld3core.heuristics import heuristic
from ld3core.optimize import JobConfig, JobResult, JobStopped, run_job
from ld3core.schedules import NoiseSchedule
from ld3core.train import Progress, validation_passes
from registry import jobs as q
from registry.catalog import ModelSpec
from registry.db import json_safe, session_scope
from registry.models import get_model
from registry.schemas import JobOptions, ScheduleVersionCreate
from registry.settings import Settings

from .loaders import LoadedModel, load_model
from .sampling import generate, prepare_job

log = logging.getLogger(__name__)

# Database errors that may pass (a restart, a network blip): the task is retried, the job
# is not marked failed.
TRANSIENT_DB_ERRORS = (OperationalError, InterfaceError)
MAX_ATTEMPTS = 10  # claims of one job before it is failed instead of retried once more
LEASE_CHECK_S = 1.0  # should_stop sees a cancellation or a lost lease within this


class JobInterrupted(Exception):
    """Raised from ``on_progress`` to stop the teacher or evaluation phase, which have no
    ``should_stop`` hook (cancelled, lease lost, shutdown)."""


# JobOptions -> ld3core configuration.

def job_config(solver: str, nfe: int, options: dict[str, Any], *, latent: bool = False) -> JobConfig:
    """The ld3core ``JobConfig`` of a job: its solver and NFE and its stored options (validated
    again: a job never runs with an option silently dropped), with the paper's pixel or latent
    recipe for the options left unset."""
    return JobConfig.from_dict(JobOptions.model_validate(options).job_config(solver, nfe, latent=latent))


# Checkpoint bytes.

def state_to_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def state_from_bytes(data: bytes) -> dict[str, Any]:
    """A checkpoint back; ``weights_only`` refuses anything but tensors and plain values."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)


# The stored fields of a schedule version.

def step_sigmas(schedule: NoiseSchedule, t: torch.Tensor) -> list[float]:
    """The sigma a k-diffusion-style sampler uses at each step time: sigma/alpha (VE, EDM's
    sigma) for diffusion schedules, sigma_t = t for rectified flow (its sigmas are in [0, 1])."""
    t = t.to(torch.float64)
    s = schedule.sigma(t) if schedule.name == "flow" else schedule.edm_sigma(t)
    return s.tolist()


def model_timesteps(loaded: LoadedModel, t_model: torch.Tensor) -> list[float]:
    """The value the network is called with at each step (e.g. a DDPM timestep in [0, 1000))."""
    fn = loaded.model_time or loaded.schedule.model_time
    return fn(t_model.to(torch.float64)).tolist()


def time_space(schedule: NoiseSchedule) -> str:
    return f"{schedule.name} t in [{schedule.t_min:g}, {schedule.T:g}]"


def quality(res: JobResult, loss: str) -> dict[str, Any]:
    """The learned schedule next to the best heuristic on the held-out test pairs."""
    best = res.best_heuristic
    return {
        "metric": loss, "n_test": res.config["n_test"], "source": res.source, "message": res.message,
        "learned": res.test["ld3"], "best_heuristic": {"name": best, **res.test[best]},
        "learned_minus_best": res.test["ld3_minus_best"],
        "heuristics": {k: v for k, v in res.test.items() if k not in ("ld3", "ld3_minus_best")},
    }


def model_sha256(spec: ModelSpec) -> str:
    """The weights' content hash; an analytic model (no weights) hashes its catalog entry."""
    if spec.sha256:
        return spec.sha256
    entry = {k: v for k, v in spec.to_dict().items() if k != "description"}
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()


@functools.cache
def code_version() -> str:
    """Package version, plus the git commit when the code runs from a checkout (``+g<sha>``,
    ``.dirty`` when tracked files differ from it)."""
    try:
        version = importlib.metadata.version("ld3-schedule-service")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    root = str(Path(__file__).resolve().parent.parent)
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}" + (".dirty" if dirty else "")


PREVIEW_SEEDS = range(2**41, 2**41 + 8)  # disjoint from every job's pair seeds and ld3 evaluate's


def has_images(loaded: LoadedModel) -> bool:
    """Whether the model's (decoded) samples are images: grey or RGB, (C, H, W)."""
    return len(loaded.image_shape) == 3 and loaded.image_shape[0] in (1, 3)


def samples_png(loaded: LoadedModel, solver: str, res: JobResult, cfg: JobConfig, *, guidance: float | None,
                prompts: list[str] | None, class_labels: list[int] | None = None, device: str) -> bytes | None:
    """A PNG of two rows of samples from the same noise and conditions: the best heuristic's
    schedule above, the learned one below (latent models: decoded images); None for models
    whose samples are not images."""
    if not has_images(loaded):
        return None
    from PIL import Image

    seeds = list(PREVIEW_SEEDS)
    best = heuristic(res.best_heuristic, loaded.schedule, cfg.ld3.n_steps)
    rows = [generate(loaded, solver, t, tm, seeds, guidance=guidance, prompts=prompts, class_labels=class_labels,
                     device=device)
            for t, tm in ((best, None), (res.learned_t_steps, res.learned_t_model))]
    grid = torch.stack(rows)  # (2, n, C, H, W) in [-1, 1]
    r, n, c, h, w = grid.shape
    grid = grid.permute(0, 3, 1, 4, 2).reshape(r * h, n * w, c)
    pixels = ((grid + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    img = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    scale = max(1, 64 // max(h, w))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


# The ETA: the job's remaining work, in network evaluations of one sample.

PHASES = ("teacher", "training", "evaluation")
BACKWARD = 2.0  # a backward pass costs about two forward passes


@dataclass(frozen=True)
class PhaseCost:
    """One phase's work in network evaluations of one sample: ``per_step`` for each of its
    ``steps`` progress steps still to run, and ``tail``, the work after its last report that
    no progress step covers (scoring the heuristics after the teacher, the sample grid after
    the evaluation)."""

    per_step: float
    steps: int
    tail: float = 0.0


def job_cost(cfg: JobConfig, *, resume_iteration: int = 0, preview_samples: int = 0) -> dict[str, PhaseCost]:
    """The work of each phase of a job (``resume_iteration``: training starts there), counted in
    network evaluations of one sample (a backward pass counts ``BACKWARD``, a rematerialized
    one a forward more; losses and VAE decodes are not counted).

    Teacher: a step is one pair. Training: one iteration, with the validation passes and the
    epoch-end moves of the validation noise spread over the iterations. Evaluation: one
    schedule (every heuristic, then the learned one) on the test pairs."""
    ld3, nfe = cfg.ld3, cfg.ld3.nfe
    k = min(cfg.starts, len(cfg.heuristics)) if cfg.init == "best" else 1  # starts trained side by side
    per_epoch = cfg.n_train // ld3.batch_size
    total = (ld3.phase1_epochs + ld3.phase2_epochs) * per_epoch
    grad = 1 + BACKWARD + (1 if ld3.remat else 0)  # forward, backward, recomputed forward
    steps = total * k * ld3.batch_size * nfe * grad
    full, single = validation_passes(ld3, per_epoch)
    validations = (full * (2 if ld3.soft else 1) + single) * k * cfg.n_val * nfe
    epochs = ld3.phase1_epochs + ld3.phase2_epochs
    moves = epochs * k * cfg.n_val * nfe * grad if ld3.soft else 0
    if ld3.soft and ld3.accept_moves:  # each move is checked by one more solve
        moves += (total * ld3.batch_size + epochs * cfg.n_val) * k * nfe
    return {
        "teacher": PhaseCost(cfg.teacher.nfe, cfg.n_train + cfg.n_val + cfg.n_test, len(cfg.heuristics) * cfg.n_val * nfe),
        "training": PhaseCost((steps + validations + moves) / total, total - resume_iteration),
        "evaluation": PhaseCost(cfg.n_test * nfe, len(cfg.heuristics) + 1, preview_samples * nfe),
    }


def remaining_work(cost: dict[str, PhaseCost], phase: str, done: int, total: int) -> float:
    """The work left to the job's end, ``done`` of ``total`` steps into ``phase``."""
    here = cost[phase]
    later = [cost[p] for p in PHASES[PHASES.index(phase) + 1 :]]
    return max(total - done, 0) * here.per_step + here.tail + sum(c.steps * c.per_step + c.tail for c in later)


# The lease: heartbeat thread and the stop decision.

class Lease:
    """Keeps the job's heartbeat from a daemon thread and caches what the registry answers.

    ``stop_reason()`` costs no database call: the thread refreshes the answer every
    ``min(heartbeat_s, LEASE_CHECK_S)`` seconds, and progress writes refresh it too.
    """

    def __init__(self, factory: sessionmaker[Session], job_id: str, worker: str, every_s: float,
                 interrupt: threading.Event | None = None) -> None:
        self.factory, self.job_id, self.worker, self.every_s = factory, job_id, worker, every_s
        self.interrupt = interrupt or threading.Event()
        self.held, self.cancel_requested = True, False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> "Lease":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def update(self, lease: q.Lease) -> None:
        self.held, self.cancel_requested = bool(lease.held), bool(lease.cancel_requested)

    def _loop(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                with session_scope(self.factory) as s:
                    self.update(q.heartbeat(s, self.job_id, worker=self.worker))
            except Exception as e:  # noqa: BLE001 - a heartbeat miss must not end the job
                log.warning("job %s: heartbeat failed: %s", self.job_id, e)

    def stop_reason(self) -> str | None:
        if not self.held:
            return "lost"
        if self.cancel_requested:
            return "cancelled"
        if self.interrupt.is_set():
            return "interrupted"
        return None


# The callbacks of run_job.

class Reporter:
    """``on_progress``, ``on_checkpoint`` and ``should_stop`` of one job, throttled."""

    def __init__(self, factory: sessionmaker[Session], job_id: str, worker: str, lease: Lease,
                 settings: Settings, iterations_per_epoch: int, cost: dict[str, PhaseCost]) -> None:
        self.factory, self.job_id, self.worker, self.lease = factory, job_id, worker, lease
        self.progress_every, self.checkpoint_every = settings.progress_every_s, settings.checkpoint_every_s
        self.ipe, self.cost = iterations_per_epoch, cost
        self.phase: str | None = None
        self.phase_t0 = self.phase_done0 = 0.0
        self.s_per_unit: float | None = None  # seconds per unit of work, measured in the phase in progress
        self.last_write = self.last_save = -math.inf
        self.last_row: dict[str, Any] | None = None  # the training history row of the last validation
        self.saved_iteration: int | None = None

    def should_stop(self) -> bool:
        return self.lease.stop_reason() is not None

    def on_progress(self, p: Progress) -> None:
        now = time.monotonic()
        if p.phase != "training" and self.should_stop():
            raise JobInterrupted(self.lease.stop_reason())  # teacher/evaluation have no stop hook
        changed = p.phase != self.phase
        if changed:
            self.phase, self.phase_t0, self.phase_done0 = p.phase, now, p.iteration
        point = self._curve_point(p) if p.val_hard is not None or p.val_soft is not None else None
        if not (changed or point or p.iteration >= p.total or now - self.last_write >= self.progress_every):
            return
        self.last_write = now
        eta = self._eta(p, now)
        try:
            with session_scope(self.factory) as s:
                if changed:
                    q.add_event(s, self.job_id, "phase", f"{p.phase} started", {"phase": p.phase, "total": p.total})
                self.lease.update(q.update_progress(
                    s, self.job_id, worker=self.worker, phase=p.phase, done=p.iteration, total=p.total,
                    loss_current=json_safe(p.val), loss_best=json_safe(p.best), eta_s=json_safe(eta), curve_point=point,
                ))
        except TRANSIENT_DB_ERRORS as e:  # the job goes on; the lease thread notices a lasting outage
            log.warning("job %s: progress not written: %s", self.job_id, e)

    def _eta(self, p: Progress, now: float) -> float | None:
        """Seconds to the job's end: the work left (``remaining_work``) at the speed measured since
        the phase began (before its first step: the previous phase's speed; None before any)."""
        done = p.iteration - self.phase_done0
        if done > 0:
            self.s_per_unit = (now - self.phase_t0) / (done * self.cost[p.phase].per_step)
        if self.s_per_unit is None:
            return None
        return self.s_per_unit * remaining_work(self.cost, p.phase, p.iteration, p.total)

    def _curve_point(self, p: Progress) -> dict[str, Any]:
        lr = None
        if self.last_row is not None:  # on_checkpoint ran just before this report
            best = self.last_row["best"]
            lr = self.last_row["lr_xi"][min(range(len(best)), key=best.__getitem__)]
        return {"iteration": p.iteration, "train": json_safe(p.loss), "val_hard": json_safe(p.val_hard),
                "val_soft": json_safe(p.val_soft), "lr": lr}

    def on_checkpoint(self, state: dict[str, Any]) -> None:
        it = state["iteration"]
        self.last_row = state["history"][-1] if state["history"] else None
        now = time.monotonic()
        epoch_end = it % self.ipe == 0
        if not (epoch_end or self.should_stop() or now - self.last_save >= self.checkpoint_every):
            return
        if not self.lease.held or it == self.saved_iteration:
            return  # another worker holds the job now: its checkpoint is not ours to overwrite
        data = state_to_bytes(state)
        try:
            with session_scope(self.factory) as s:
                q.save_checkpoint(s, self.job_id, iteration=it, data=data)
                if epoch_end and it > 0:
                    q.add_event(s, self.job_id, "checkpoint", f"checkpoint at iteration {it} (epoch {it // self.ipe})",
                                {"iteration": it, "bytes": len(data)})
        except TRANSIENT_DB_ERRORS as e:  # the next checkpoint will do; a resume starts from the last one stored
            log.warning("job %s: checkpoint at iteration %d not saved: %s", self.job_id, it, e)
            return
        self.last_save, self.saved_iteration = now, it


# The task body.

@dataclass(frozen=True)
class Claimed:
    """What the runner needs of a claimed job row (read inside the claiming transaction)."""

    id: str
    model_key: str
    solver: str
    nfe: int
    options: dict[str, Any]
    attempts: int


def claim(factory: sessionmaker[Session], job_id: str, *, worker: str, stale_after_s: float) -> Claimed | None:
    """Claim ``job_id`` (committed at once); None if it is not ours to run."""
    with session_scope(factory) as s:
        job = q.claim_job(s, job_id, worker=worker, stale_after_s=stale_after_s)
        if job is None:
            return None
        return Claimed(job.id, job.model_key, job.solver, job.nfe, dict(job.options or {}), job.attempts)


def execute(job_id: str, *, session_factory: sessionmaker[Session], settings: Settings, worker_name: str,
            interrupt: threading.Event | None = None, stale_after_s: float | None = None) -> str:
    """Run job ``job_id`` if it can be claimed; returns what became of it.

    "succeeded", "failed", "cancelled"; "skipped" (someone else holds it, or it is finished);
    "released" (``interrupt`` was set, e.g. at shutdown: the job, checkpointed, is queued
    again); "lost" (another worker took the job over: nothing of it is touched).
    ``stale_after_s`` overrides the setting for this claim (the embedded runner adopts the jobs
    its previous process held with 0). A transient database error propagates (the caller
    retries later); any other error fails the job, keeping its checkpoint.
    """
    stale = settings.stale_after_s if stale_after_s is None else stale_after_s
    job = claim(session_factory, job_id, worker=worker_name, stale_after_s=stale)
    if job is None:
        log.info("job %s: not claimed (held elsewhere, cancelled or finished)", job_id)
        return "skipped"
    if job.attempts > MAX_ATTEMPTS:
        return _fail(session_factory, job, worker_name, f"gave up after {job.attempts - 1} attempts: its worker "
                     "died or the database was unreachable each time", None)
    with Lease(session_factory, job_id, worker_name, min(settings.heartbeat_s, LEASE_CHECK_S), interrupt) as lease:
        try:
            spec, resume = _model_and_checkpoint(session_factory, job, worker_name)
            res, loaded, cfg = _run(job, spec, resume, settings, session_factory, worker_name, lease)
            png = _preview(loaded, job, res, cfg, resolve_device(settings.device))
            version = _version(job, spec, loaded, cfg, res, png)
            result = _result(res, loaded.schedule, cfg)
        except (JobInterrupted, JobStopped):
            return _stopped(session_factory, job, worker_name, lease)
        except TRANSIENT_DB_ERRORS:
            raise
        except Exception as e:  # noqa: BLE001 - every other failure is the job's, recorded for a person
            if not lease.held:
                return "lost"
            return _fail(session_factory, job, worker_name, f"{type(e).__name__}: {e}", traceback.format_exc())
        try:
            with session_scope(session_factory) as s:
                q.finish_success(s, job_id, version=version, result=result, worker=worker_name)
        except q.JobStateError as e:
            log.warning("job %s: finished but not stored: %s", job_id, e)
            return "lost"
    log.info("job %s: succeeded (%s)", job_id, res.message)
    return "succeeded"


def _model_and_checkpoint(factory: sessionmaker[Session], job: Claimed, worker: str) -> tuple[ModelSpec, dict | None]:
    """The job's catalog entry and its checkpoint (if any), with a started/resumed event."""
    with session_scope(factory) as s:
        model = get_model(s, job.model_key)
        if model is None:
            raise LookupError(f"model {job.model_key!r} is not in the catalog")
        spec = ModelSpec.from_dict(model.spec)
        ck = q.load_checkpoint(s, job.id)
        data = {"worker": worker, "attempt": job.attempts}
        if ck is None:
            q.add_event(s, job.id, "started", f"started on {worker} (attempt {job.attempts})", data)
            return spec, None
        q.add_event(s, job.id, "resumed", f"resumed on {worker} from the checkpoint at iteration {ck.iteration} "
                    f"(attempt {job.attempts})", {**data, "iteration": ck.iteration})
        return spec, state_from_bytes(ck.data)


def _run(job: Claimed, spec: ModelSpec, resume: dict[str, Any] | None, settings: Settings,
         factory: sessionmaker[Session], worker: str, lease: Lease) -> tuple[JobResult, LoadedModel, JobConfig]:
    device = resolve_device(settings.device)
    loaded = load_model(spec, settings.model_root, allow_pickle=settings.allow_pickle, device=device)
    cfg = job_config(job.solver, job.nfe, job.options, latent=loaded.latent)
    inputs = prepare_job(loaded, loss=cfg.ld3.loss, guidance=job.options.get("guidance"),
                         prompts=job.options.get("prompts"), class_labels=job.options.get("class_labels"), device=device)
    cost = job_cost(cfg, resume_iteration=resume["iteration"] if resume else 0,
                    preview_samples=2 * len(PREVIEW_SEEDS) if has_images(loaded) else 0)
    rep = Reporter(factory, job.id, worker, lease, settings, cfg.n_train // cfg.ld3.batch_size, cost)
    res = run_job(inputs.denoiser, inputs.sample_shape, cfg, inputs.loss_fn, device=device,
                  conditions=inputs.conditions, on_progress=rep.on_progress, on_checkpoint=rep.on_checkpoint,
                  should_stop=rep.should_stop, resume=resume)
    return res, loaded, cfg


def _stopped(factory: sessionmaker[Session], job: Claimed, worker: str, lease: Lease) -> str:
    """After a stop: cancelled on request; queued again on shutdown; untouched if the lease is lost."""
    reason = lease.stop_reason()
    if reason == "lost" or not lease.held:
        log.info("job %s: another worker holds it now; stopped", job.id)
        return "lost"
    with session_scope(factory) as s:
        if reason == "cancelled":
            q.finish_cancelled(s, job.id, worker=worker)
            log.info("job %s: cancelled", job.id)
            return "cancelled"
        q.release_job(s, job.id, worker=worker, reason=f"{worker} is shutting down; the job resumes from its checkpoint")
    log.info("job %s: released at shutdown", job.id)
    return "released"


def _fail(factory: sessionmaker[Session], job: Claimed, worker: str, reason: str, tb: str | None) -> str:
    """Failed with ``reason``; the traceback goes to an event. The registry keeps the
    checkpoint, so that a retry resumes from it."""
    log.error("job %s failed: %s", job.id, reason)
    with session_scope(factory) as s:
        q.finish_failure(s, job.id, reason=reason, worker=worker)
        if tb:
            q.add_event(s, job.id, "failed", "traceback", {"traceback": tb})
    return "failed"


def _preview(loaded: LoadedModel, job: Claimed, res: JobResult, cfg: JobConfig, device: str) -> bytes | None:
    """``samples_png``, or None if it fails: a preview image is not worth a finished job."""
    try:
        return samples_png(loaded, job.solver, res, cfg, guidance=job.options.get("guidance"),
                           prompts=job.options.get("prompts"), class_labels=job.options.get("class_labels"), device=device)
    except Exception as e:  # noqa: BLE001
        log.warning("job %s: no sample preview: %s: %s", job.id, type(e).__name__, e)
        return None


def _version(job: Claimed, spec: ModelSpec, loaded: LoadedModel, cfg: JobConfig, res: JobResult,
             png: bytes | None) -> ScheduleVersionCreate:
    sch = loaded.schedule
    val = res.val["ld3_hard"] if res.source == "ld3" else res.val[res.source]
    return ScheduleVersionCreate(
        model_key=job.model_key, solver=job.solver, nfe=job.nfe, guidance=job.options.get("guidance"),
        t_steps=res.t_steps.tolist(), t_model=res.t_model.tolist(), time_space=time_space(sch),
        sigmas=step_sigmas(sch, res.t_steps), model_timesteps=model_timesteps(loaded, res.t_model),
        schedule_config=sch.config(), source=res.source, model_sha256=model_sha256(spec),
        config=cfg.to_dict(), seed=cfg.ld3.seed, code_version=code_version(), val_loss=json_safe(val),
        quality=json_safe(quality(res, cfg.ld3.loss)), job_id=job.id, samples_png=png,
    )


def _result(res: JobResult, schedule: NoiseSchedule, cfg: JobConfig) -> dict[str, Any]:
    """The job's summary (``JobRow.result``): no per-iteration history, that is the curve.

    ``step_sigmas``: the learned schedule ("ld3") and every heuristic the job scored, as the
    N+1 sigmas of ``step_sigmas`` (the units of the version's ``sigmas``), for the dashboard's plot.
    """
    d = res.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k != "history"}
    n = cfg.ld3.n_steps
    d["step_sigmas"] = {"ld3": step_sigmas(schedule, res.learned_t_steps),
                        **{h: step_sigmas(schedule, heuristic(h, schedule, n)) for h in cfg.heuristics}}
    return json_safe(d)
