"""The task body: run one LD3 job from its row in the registry to a schedule version.

``execute`` is the same under Celery and in the embedded runner. It claims the job (an atomic
UPDATE: a second delivery of the same job finds it taken and does nothing), loads the catalog
model, runs the job (``worker.sampling.run_model_job``) with its lease (``worker.lease``: the
heartbeat thread) and its reporter (``worker.reporter``: progress with the ETA, checkpoints,
stop), and stores what it learned (``worker.version``, ``worker.preview``).

Outcomes: a new immutable schedule version with its provenance and quality (succeeded);
cancelled; failed with a reason a person can read (the traceback goes to an event; the
registry keeps the checkpoint, so that ``registry.jobs.retry_job`` resumes the job); released
(the worker is shutting down: queued again, checkpointed); or untouched (the lease was lost:
another worker holds the job).
"""

from __future__ import annotations

import logging
import threading
import traceback
from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy.orm import Session, sessionmaker

from ld3core.config import JobConfig
from ld3core.optimize import JobResult, JobStopped
from registry import jobs as q
from registry.catalog import ModelSpec
from registry.db import DATABASE_UNREACHABLE, session_scope
from registry.models import get_model
from registry.settings import Settings

from .checkpoint import state_from_bytes
from .eta import Eta, job_cost
from .lease import LEASE_CHECK_S, Lease
from .loaders import LoadedModel, load_model
from .options import conditioning, job_config
from .preview import preview_samples, samples_png
from .reporter import JobInterrupted, Reporter
from .sampling import run_model_job
from .version import job_result, schedule_version

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 10  # claims of one job before it is failed instead of retried once more


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


def resolve_device(name: str) -> str:
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def execute(job_id: str, *, session_factory: sessionmaker[Session], settings: Settings, worker_name: str,
            interrupt: threading.Event | None = None, stale_after_s: float | None = None) -> str:
    """Run job ``job_id`` if it can be claimed; returns what became of it.

    "succeeded", "failed", "cancelled"; "skipped" (someone else holds it, or it is finished);
    "released" (``interrupt`` was set, e.g. at shutdown: the job, checkpointed, is queued
    again); "lost" (another worker took the job over: nothing of it is touched).
    ``stale_after_s`` overrides the setting for this claim (the embedded runner adopts the jobs
    its previous process held with 0). A database error that may pass (``DATABASE_UNREACHABLE``)
    propagates (the caller retries later); any other error fails the job, keeping its checkpoint.
    """
    stale = settings.stale_after_s if stale_after_s is None else stale_after_s
    job = claim(session_factory, job_id, worker=worker_name, stale_after_s=stale)
    if job is None:
        log.info("job %s: not claimed (held elsewhere, cancelled or finished)", job_id)
        return "skipped"
    if job.attempts > MAX_ATTEMPTS:
        return _fail(session_factory, job, worker_name, f"gave up after {job.attempts - 1} attempts: its worker "
                     "died or the database was unreachable each time", None)
    device = resolve_device(settings.device)
    with Lease(session_factory, job_id, worker_name, min(settings.heartbeat_s, LEASE_CHECK_S), interrupt) as lease:
        try:
            spec, resume = _model_and_checkpoint(session_factory, job, worker_name)
            loaded = load_model(spec, settings.model_root, allow_pickle=settings.allow_pickle, device=device)
            cfg = job_config(job.solver, job.nfe, job.options, latent=loaded.latent)
            res = _run(job, loaded, cfg, resume, settings, session_factory, worker_name, lease, device)
            png = _preview(job, loaded, res, cfg, device)
            version = schedule_version(res, cfg, loaded, spec, job_id=job.id, guidance=job.options.get("guidance"),
                                       samples_png=png)
            result = job_result(res, loaded.schedule, cfg)
        except (JobInterrupted, JobStopped):
            return _stopped(session_factory, job, worker_name, lease)
        except DATABASE_UNREACHABLE:
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


def _run(job: Claimed, loaded: LoadedModel, cfg: JobConfig, resume: dict[str, Any] | None, settings: Settings,
         factory: sessionmaker[Session], worker: str, lease: Lease, device: str) -> JobResult:
    """The LD3 job itself, reporting to the registry as it goes."""
    cost = job_cost(cfg, resume_iteration=resume["iteration"] if resume else 0, preview_samples=preview_samples(loaded))
    rep = Reporter(factory, job.id, worker, lease, settings, cfg.n_train // cfg.ld3.batch_size, Eta(cost))
    return run_model_job(loaded, cfg, **conditioning(job.options), device=device, model_root=settings.model_root,
                         on_progress=rep.on_progress, on_checkpoint=rep.on_checkpoint, should_stop=rep.should_stop,
                         resume=resume, graphs=settings.cuda_graphs)


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


def _preview(job: Claimed, loaded: LoadedModel, res: JobResult, cfg: JobConfig, device: str) -> bytes | None:
    """``samples_png``, or None if it fails: a preview image is not worth a finished job."""
    try:
        return samples_png(loaded, res, cfg, **conditioning(job.options), device=device)
    except Exception as e:  # noqa: BLE001
        log.warning("job %s: no sample preview: %s: %s", job.id, type(e).__name__, e)
        return None
