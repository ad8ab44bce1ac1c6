"""Job queries: submission with idempotency and dedupe, the atomic claim, progress, the end states.

Rules (service contract, issue 4):
- ``create_job`` returns ``(job, created)``. With an ``idempotency_key`` already used, the job
  it created is returned (``created=False``) if the body is the same, else
  ``IdempotencyConflict``. Without one (or with a new one), a queued or running job with the
  same fingerprint (model, solver, nfe and every option, defaults filled in) is returned
  instead of a duplicate. A partial unique index (``uq_jobs_active_fingerprint``) and the
  unique ``idempotency_key`` make both rules hold under concurrent submissions too.
- ``claim_job`` is one conditional UPDATE: a queued job, or a running one whose heartbeat is
  older than ``stale_after_s`` (its worker died), becomes running on this worker. Of two
  concurrent claimers exactly one gets the row. A job with a cancel request is never claimed;
  an abandoned one (stale, cancel requested) is cancelled instead.
- Progress and heartbeat writes are guarded by the holder (``worker``): a worker that lost
  its lease learns it from the returned ``Lease`` and must stop.
- Checkpoints: success deletes the job's checkpoint (its state lives on in the version);
  cancellation deletes it too (the user asked to drop the job and a cancelled job is never
  run again). A failed job keeps it: ``retry_job`` queues the job again and its next worker
  resumes from that checkpoint instead of starting over.
- Events written here: submitted, cancel_requested, cancelled, succeeded, failed, requeued.
  The runner adds started/resumed, phase and checkpoint events (it knows their context).
Functions flush but never commit: the caller owns the transaction.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, literal, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from .db import UTCDateTime, json_safe, utcnow
from .schedules import create_version, promote
from .schemas import JobCreate, ScheduleVersionCreate
from .tables import (
    ACTIVE_STATES,
    EVENT_KINDS,
    JOB_PHASES,
    JOB_STATES,
    CheckpointRow,
    JobEventRow,
    JobRow,
    ScheduleVersionRow,
    new_job_id,
)

MAX_IDEMPOTENCY_KEY = 255
MAX_ERROR_CHARS = 10_000
MAX_LIST_LIMIT = 500


class IdempotencyConflict(Exception):
    """An ``Idempotency-Key`` reused with a different request body."""

    def __init__(self, key: str, job: JobRow):
        super().__init__(f"Idempotency-Key {key!r} was used for job {job.id} with a different request body")
        self.key, self.job, self.job_id = key, job, job.id  # job_id survives a rollback


class JobNotFound(LookupError):
    def __init__(self, job_id: str):
        super().__init__(f"job {job_id!r} does not exist")
        self.job_id = job_id


class JobStateError(Exception):
    """A transition the job's current state does not allow (e.g. finishing a job another worker holds)."""


@dataclass(frozen=True)
class Lease:
    """What a worker learns at every write: does it still hold the job, and is cancel requested."""

    held: bool
    cancel_requested: bool


def job_fingerprint(data: JobCreate) -> str:
    """sha256 of the canonical JSON of (model, solver, nfe, options with defaults filled in)."""
    body = {"model": data.model, "solver": data.solver, "nfe": data.nfe, "options": data.options.model_dump(mode="json")}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _reload(s: Session, job_id: str, *, lock: bool = False) -> JobRow | None:
    return s.get(JobRow, job_id, populate_existing=True, with_for_update=lock or None)


def _by_key(s: Session, key: str) -> JobRow | None:
    return s.scalar(select(JobRow).where(JobRow.idempotency_key == key).execution_options(populate_existing=True))


def _active_twin(s: Session, fingerprint: str) -> JobRow | None:
    return s.scalar(select(JobRow).where(JobRow.fingerprint == fingerprint, JobRow.state.in_(ACTIVE_STATES))
                    .execution_options(populate_existing=True))


def _same_body(key: str, job: JobRow, fingerprint: str) -> tuple[JobRow, bool]:
    if job.fingerprint != fingerprint:
        raise IdempotencyConflict(key, job)
    return job, False


def create_job(s: Session, data: JobCreate, *, idempotency_key: str | None = None) -> tuple[JobRow, bool]:
    """A new queued job, or the existing one the idempotency and dedupe rules return (``created=False``)."""
    if idempotency_key is not None and not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise ValueError(f"idempotency_key: must be 1-{MAX_IDEMPOTENCY_KEY} characters, got {len(idempotency_key)}")
    fp = job_fingerprint(data)
    if idempotency_key is not None and (job := _by_key(s, idempotency_key)) is not None:
        return _same_body(idempotency_key, job, fp)
    if (job := _active_twin(s, fp)) is not None:
        return job, False
    job = JobRow(id=new_job_id(), model_key=data.model, solver=data.solver, nfe=data.nfe,
                 options=data.options.model_dump(mode="json"), fingerprint=fp, idempotency_key=idempotency_key,
                 state="queued", curve=[], created_at=utcnow())
    try:
        with s.begin_nested():
            s.add(job)
            s.flush()
            s.add(JobEventRow(job_id=job.id, kind="submitted", message=f"{data.model} / {data.solver} / NFE {data.nfe}"))
    except IntegrityError:
        # A concurrent submission won the race for the key or the fingerprint: return its job.
        if idempotency_key is not None and (twin := _by_key(s, idempotency_key)) is not None:
            return _same_body(idempotency_key, twin, fp)
        if (twin := _active_twin(s, fp)) is not None:
            return twin, False
        raise  # something else, e.g. a model key missing from the catalog
    return job, True


def get_job(s: Session, job_id: str) -> JobRow | None:
    return s.get(JobRow, job_id)


def list_jobs(
    s: Session, *, state: str | None = None, model: str | None = None, limit: int = 50, offset: int = 0
) -> list[JobRow]:
    """Jobs, newest first, optionally of one state and/or one model, each with the version it published."""
    if state is not None and state not in JOB_STATES:
        raise ValueError(f"state: unknown state {state!r}; known: {', '.join(JOB_STATES)}")
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise ValueError(f"limit: must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
    if offset < 0:
        raise ValueError(f"offset: must be >= 0, got {offset}")
    q = select(JobRow).options(selectinload(JobRow.schedule_version))
    if state is not None:
        q = q.where(JobRow.state == state)
    if model is not None:
        q = q.where(JobRow.model_key == model)
    return list(s.scalars(q.order_by(JobRow.created_at.desc(), JobRow.id).limit(limit).offset(offset)))


def job_events(s: Session, job_id: str) -> list[JobEventRow]:
    """A job's events, oldest first."""
    return list(s.scalars(select(JobEventRow).where(JobEventRow.job_id == job_id).order_by(JobEventRow.id)))


def add_event(s: Session, job_id: str, kind: str, message: str, data: dict[str, Any] | None = None) -> JobEventRow:
    if kind not in EVENT_KINDS:
        raise ValueError(f"kind: unknown event kind {kind!r}; known: {', '.join(EVENT_KINDS)}")
    event = JobEventRow(job_id=job_id, kind=kind, message=message, data=json_safe(data), at=utcnow())
    s.add(event)
    s.flush()
    return event


def request_cancel(s: Session, job_id: str) -> JobRow:
    """Queued: cancelled at once. Running: ``cancel_requested`` (the worker stops within an iteration).
    Finished: returned unchanged."""
    job = _reload(s, job_id, lock=True)
    if job is None:
        raise JobNotFound(job_id)
    if job.state == "queued":
        job.state, job.cancel_requested, job.finished_at = "cancelled", True, utcnow()
        add_event(s, job_id, "cancelled", "cancelled before it started")
    elif job.state == "running" and not job.cancel_requested:
        job.cancel_requested = True
        add_event(s, job_id, "cancel_requested", f"cancel requested; worker {job.worker} stops within one iteration")
    s.flush()
    return job


def _stale(now: dt.datetime, stale_after_s: float) -> ColumnElement[bool]:
    """Running, and no heartbeat for ``stale_after_s`` (or none ever): its worker is presumed dead."""
    cutoff = now - dt.timedelta(seconds=stale_after_s)
    return and_(JobRow.state == "running", or_(JobRow.heartbeat_at.is_(None), JobRow.heartbeat_at < cutoff))


def claim_job(s: Session, job_id: str, *, worker: str, stale_after_s: float) -> JobRow | None:
    """Take the job for ``worker`` (atomic); None if another worker holds it or it is finished/cancelled."""
    now = utcnow()
    abandoned = _stale(now, stale_after_s)
    claimed = s.execute(
        update(JobRow)
        .where(JobRow.id == job_id, JobRow.cancel_requested.is_(False), or_(JobRow.state == "queued", abandoned))
        .values(state="running", worker=worker, heartbeat_at=now, attempts=JobRow.attempts + 1,
                started_at=func.coalesce(JobRow.started_at, literal(now, UTCDateTime())))
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    if not claimed:
        _cancel_if_abandoned(s, job_id, abandoned, now)
        return None
    return _reload(s, job_id)


def _cancel_if_abandoned(s: Session, job_id: str, abandoned: ColumnElement[bool], now: dt.datetime) -> None:
    """A cancel request on a job whose worker died: nobody will honour it, so cancel it here."""
    done = s.execute(
        update(JobRow).where(JobRow.id == job_id, JobRow.cancel_requested.is_(True), abandoned)
        .values(state="cancelled", finished_at=now).execution_options(synchronize_session=False)
    ).rowcount == 1
    if done:
        add_event(s, job_id, "cancelled", "cancelled: its worker stopped before honouring the request")
        s.execute(delete(CheckpointRow).where(CheckpointRow.job_id == job_id))


def _lease(s: Session, job_id: str, held: bool) -> Lease:
    cancel = s.scalar(select(JobRow.cancel_requested).where(JobRow.id == job_id))
    return Lease(held=held, cancel_requested=bool(cancel))


def _held_by(job_id: str, worker: str) -> tuple:
    return (JobRow.id == job_id, JobRow.worker == worker, JobRow.state == "running")


def heartbeat(s: Session, job_id: str, *, worker: str) -> Lease:
    """Refresh the heartbeat if ``worker`` still holds the job."""
    held = s.execute(update(JobRow).where(*_held_by(job_id, worker)).values(heartbeat_at=utcnow())
                     .execution_options(synchronize_session=False)).rowcount == 1
    return _lease(s, job_id, held)


def update_progress(
    s: Session, job_id: str, *, worker: str, phase: str, done: int, total: int, loss_current: float | None = None,
    loss_best: float | None = None, eta_s: float | None = None, curve_point: dict[str, Any] | None = None,
) -> Lease:
    """Write progress (and the heartbeat) if ``worker`` holds the job.

    Losses given as None keep their stored value; ``eta_s`` None means unknown.
    ``curve_point`` ({iteration, train, val_hard, val_soft, lr}) is appended to the job's curve.
    """
    if phase not in JOB_PHASES:
        raise ValueError(f"phase: unknown phase {phase!r}; known: {', '.join(JOB_PHASES)}")
    values: dict[str, Any] = {"phase": phase, "progress_done": done, "progress_total": total, "heartbeat_at": utcnow(),
                              "eta_s": json_safe(eta_s)}
    if loss_current is not None:
        values["loss_current"] = json_safe(loss_current)
    if loss_best is not None:
        values["loss_best"] = json_safe(loss_best)
    held = s.execute(update(JobRow).where(*_held_by(job_id, worker)).values(**values)
                     .execution_options(synchronize_session=False)).rowcount == 1
    if held and curve_point is not None:
        job = _reload(s, job_id)
        job.curve = [*job.curve, json_safe(curve_point)]
        s.flush()
    return _lease(s, job_id, held)


def release_job(s: Session, job_id: str, *, worker: str, reason: str) -> bool:
    """Put a held running job back in the queue now (a worker shutting down), instead of waiting
    for its heartbeat to go stale. False if ``worker`` did not hold it."""
    released = s.execute(update(JobRow).where(*_held_by(job_id, worker))
                         .values(state="queued", worker=None, heartbeat_at=None)
                         .execution_options(synchronize_session=False)).rowcount == 1
    if released:
        add_event(s, job_id, "requeued", reason, {"worker": worker})
    return released


def save_checkpoint(s: Session, job_id: str, *, iteration: int, data: bytes) -> CheckpointRow:
    """Store the job's training state, replacing the previous one."""
    row = s.get(CheckpointRow, job_id, populate_existing=True)
    if row is None:
        row = CheckpointRow(job_id=job_id, iteration=iteration, data=data, saved_at=utcnow())
        s.add(row)
    else:
        row.iteration, row.data, row.saved_at = iteration, data, utcnow()
    s.flush()
    return row


def load_checkpoint(s: Session, job_id: str) -> CheckpointRow | None:
    return s.get(CheckpointRow, job_id, populate_existing=True)


def _finishing(s: Session, job_id: str, worker: str | None, allowed: tuple[str, ...]) -> JobRow:
    job = _reload(s, job_id, lock=True)
    if job is None:
        raise JobNotFound(job_id)
    if job.state not in allowed:
        raise JobStateError(f"job {job_id} is {job.state}; only a job that is {' or '.join(allowed)} can finish this way")
    if worker is not None and job.state == "running" and job.worker != worker:
        raise JobStateError(f"job {job_id} is held by {job.worker}, not {worker} (lease lost)")
    return job


def _end(s: Session, job: JobRow, state: str, kind: str, message: str, data: dict[str, Any] | None = None, *,
         drop_checkpoint: bool) -> None:
    job.state, job.finished_at, job.eta_s = state, utcnow(), None
    add_event(s, job.id, kind, message, data)
    if drop_checkpoint:
        s.execute(delete(CheckpointRow).where(CheckpointRow.job_id == job.id))
    s.flush()


def finish_success(
    s: Session, job_id: str, *, version: ScheduleVersionCreate, result: dict[str, Any], worker: str | None = None
) -> ScheduleVersionRow:
    """In one transaction: the new version, made active; the job succeeded with its result; checkpoint gone.
    With ``worker`` given, only that worker's running job can finish."""
    job = _finishing(s, job_id, worker, ("running",))
    if version.job_id not in (None, job_id):
        raise ValueError(f"version.job_id: {version.job_id!r} is not the finishing job {job_id!r}")
    row = create_version(s, version.model_copy(update={"job_id": job_id}))
    promote(s, row.id, actor=f"job {job_id}")
    job.result, job.schedule_version_id = json_safe(result), row.id
    _end(s, job, "succeeded", "succeeded", f"version {row.version} of {row.model_key}/{row.solver}/{row.nfe} "
         f"(source {row.source}) is active", {"version_id": row.id, "version": row.version}, drop_checkpoint=True)
    return row


def finish_failure(s: Session, job_id: str, *, reason: str, worker: str | None = None) -> JobRow:
    """The job failed for ``reason`` (shown to the user as ``error``). Its checkpoint is kept:
    ``retry_job`` resumes from it."""
    job = _finishing(s, job_id, worker, ACTIVE_STATES)
    job.error = reason[:MAX_ERROR_CHARS]
    _end(s, job, "failed", "failed", job.error, drop_checkpoint=False)
    return job


def finish_cancelled(s: Session, job_id: str, *, worker: str | None = None) -> JobRow:
    """The worker stopped the job on a cancel request; its checkpoint is deleted."""
    job = _finishing(s, job_id, worker, ACTIVE_STATES)
    job.cancel_requested = True
    _end(s, job, "cancelled", "cancelled", f"cancelled after {job.progress_done}/{job.progress_total} ({job.phase})",
         drop_checkpoint=True)
    return job


def retry_job(s: Session, job_id: str) -> JobRow:
    """Queue a failed job again (the caller enqueues it); its next worker resumes from the kept
    checkpoint, if any. ``attempts`` starts again from 0 (a job given up after too many claims
    gets its full share again); the error is cleared, the failure stays in the events.

    Raises ``JobNotFound``, or ``JobStateError`` if the job is not failed or an identical job
    (same fingerprint) is queued or running now.
    """
    job = _reload(s, job_id, lock=True)
    if job is None:
        raise JobNotFound(job_id)
    if job.state != "failed":
        raise JobStateError(f"job {job_id} is {job.state}; only a failed job can be retried")
    if (twin := _active_twin(s, job.fingerprint)) is not None:
        raise JobStateError(f"job {job_id}: the identical job {twin.id} is {twin.state}; follow that one instead")
    ck = load_checkpoint(s, job_id)
    previous = job.error
    try:
        with s.begin_nested():  # the unique index on active fingerprints settles a concurrent submission
            job.state, job.error, job.result, job.finished_at, job.eta_s = "queued", None, None, None, None
            job.worker, job.heartbeat_at, job.attempts, job.cancel_requested = None, None, 0, False
            s.flush()
    except IntegrityError:
        raise JobStateError(f"job {job_id}: an identical job was submitted meanwhile; follow that one instead") from None
    resume = "no checkpoint: it starts over" if ck is None else f"it resumes from the checkpoint at iteration {ck.iteration}"
    add_event(s, job_id, "requeued", f"retried; {resume}",
              {"previous_error": previous, "checkpoint_iteration": None if ck is None else ck.iteration})
    return job


def prune_checkpoints(s: Session, *, older_than_s: float) -> list[str]:
    """Delete the checkpoints of jobs that failed more than ``older_than_s`` ago (a failed job
    keeps its checkpoint for ``retry_job`` meanwhile); each pruned job gets an event. Returns
    their ids. A later retry of such a job starts over."""
    cutoff = utcnow() - dt.timedelta(seconds=older_than_s)
    rows = s.execute(select(CheckpointRow.job_id, CheckpointRow.iteration).join(JobRow, JobRow.id == CheckpointRow.job_id)
                     .where(JobRow.state == "failed", JobRow.finished_at < cutoff)
                     .order_by(CheckpointRow.job_id)).all()
    for job_id, iteration in rows:
        s.execute(delete(CheckpointRow).where(CheckpointRow.job_id == job_id))
        add_event(s, job_id, "checkpoint_pruned",
                  f"checkpoint at iteration {iteration} deleted {older_than_s:g} s after the failure; a retry starts over",
                  {"checkpoint_iteration": iteration})
    s.flush()
    return [job_id for job_id, _ in rows]


def stale_jobs(s: Session, *, stale_after_s: float) -> list[JobRow]:
    """Running jobs whose heartbeat is older than ``stale_after_s`` (their worker is presumed dead)."""
    return list(s.scalars(select(JobRow).where(_stale(utcnow(), stale_after_s)).order_by(JobRow.created_at)))


def count_by_state(s: Session) -> dict[str, int]:
    """How many jobs are in each state (states without a job are left out)."""
    return {state: n for state, n in s.execute(select(JobRow.state, func.count()).group_by(JobRow.state))}


def queued_jobs(s: Session) -> list[JobRow]:
    """Queued jobs, oldest first."""
    return list(s.scalars(select(JobRow).where(JobRow.state == "queued").order_by(JobRow.created_at, JobRow.id)))


__all__ = [
    "IdempotencyConflict", "JobNotFound", "JobStateError", "Lease", "job_fingerprint", "create_job", "get_job",
    "list_jobs", "job_events", "add_event", "request_cancel", "claim_job", "heartbeat", "update_progress",
    "release_job", "save_checkpoint", "load_checkpoint", "finish_success", "finish_failure", "finish_cancelled",
    "retry_job", "prune_checkpoints", "stale_jobs", "count_by_state", "queued_jobs",
]
