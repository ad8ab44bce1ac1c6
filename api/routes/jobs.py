"""``/jobs``: submit an LD3 job, follow it, cancel it.

A job is committed before it is enqueued: a runner never receives an id the database does
not hold. An ``Idempotency-Key`` makes a retried POST return the first job (200); an
identical job already queued or running is returned instead of a duplicate (200).
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Header, HTTPException, Query, Response
from pydantic import BaseModel
from sqlalchemy.orm import Session

from registry import jobs as q
from registry import models as model_q
from registry.conditioning import conditioning_errors
from registry.schemas import JobCreate, JobPublic
from registry.tables import JOB_STATES

from ..auth import ReadDep, SubmitDep
from ..deps import QueueDep, SessionDep
from ..errors import documented, field_error
from ..params import JobId, ModelFilter, Offset

log = logging.getLogger(__name__)

router = APIRouter(prefix="/jobs", tags=["jobs"])

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255,
                                              description="retries with the same key return the same job")]


class JobsPublic(BaseModel):
    """One page of jobs, newest first."""

    data: list[JobPublic]
    limit: int
    offset: int


def _enqueue(queue: Any, job_id: str) -> None:
    """Hand a committed job to the runners; a broker failure is a 503 (the job stays queued)."""
    try:
        queue.enqueue(job_id)
    except Exception as e:  # noqa: BLE001 - the job is stored; say what failed
        log.exception("enqueue of job %s failed", job_id)
        raise HTTPException(503, detail=f"job {job_id} is stored as queued but the broker refused it ({e}); "
                                        "a worker starting up picks up queued jobs") from e


def _check_model(s: Session, data: JobCreate) -> None:
    """A 422 for an unknown model, or naming each option that does not fit the model's conditioning
    (``registry.conditioning``: refused here rather than failed in the worker)."""
    row = model_q.get_model(s, data.model)
    if row is None:
        known = [m.key for m in model_q.list_models(s)]
        raise HTTPException(422, detail=[field_error(["body", "model"], f"model: unknown model {data.model!r}; known: {known}")])
    o = data.options
    errors = conditioning_errors(model_q.model_spec(row), guidance=o.guidance, prompts=o.prompts, class_labels=o.class_labels)
    if errors:
        raise HTTPException(422, detail=[field_error(["body", "options", name], f"options.{name}: {msg}") for name, msg in errors])


BROKER_DOWN = "The job is stored as queued but the broker refused it; a worker starting up picks it up"
NO_JOB = "No job has this id"


@router.post("", status_code=201, response_model=JobPublic,
             responses={200: {"model": JobPublic, "description": "An existing job: same Idempotency-Key, or an identical job queued or running"},
                        **documented({409: "The Idempotency-Key was used for a different job", 503: BROKER_DOWN})})
def submit_job(data: JobCreate, response: Response, s: SessionDep, queue: QueueDep, _: SubmitDep,
               idempotency_key: IdempotencyKey = None) -> Any:
    """Queue an LD3 job for (model, solver, nfe) with optional LD3 options."""
    _check_model(s, data)
    try:
        row, created = q.create_job(s, data, idempotency_key=idempotency_key)
    except q.IdempotencyConflict as e:
        raise HTTPException(409, detail=[field_error(["header", "Idempotency-Key"], f"Idempotency-Key: {e}")]) from e
    s.commit()
    if not created:
        response.status_code = 200
        return JobPublic.from_row(row)
    _enqueue(queue, row.id)
    return JobPublic.from_row(row)


@router.get("", response_model=JobsPublic)
def list_jobs(s: SessionDep, _: ReadDep,
              state: Annotated[Literal[JOB_STATES] | None, Query(description="filter by state")] = None,  # type: ignore[valid-type]
              model: ModelFilter = None,
              limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Offset = 0) -> Any:
    """Jobs, newest first, optionally of one state and/or model."""
    rows = q.list_jobs(s, state=state, model=model, limit=limit, offset=offset)
    return JobsPublic(data=[JobPublic.from_row(r) for r in rows], limit=limit, offset=offset)


def _get(s: Session, job_id: str):
    row = q.get_job(s, job_id)
    if row is None:
        raise HTTPException(404, detail=f"job {job_id!r} not found")
    return row


@router.get("/{job_id}", response_model=JobPublic, responses=documented({404: NO_JOB}))
def get_job(job_id: JobId, s: SessionDep, _: ReadDep) -> Any:
    """State, phase, progress, losses, ETA, error, learning curve and events of one job."""
    row = _get(s, job_id)
    return JobPublic.from_row(row, events=q.job_events(s, job_id))


@router.post("/{job_id}/cancel", response_model=JobPublic,
             responses=documented({404: NO_JOB, 409: "The job already succeeded or failed"}))
def cancel_job(job_id: JobId, s: SessionDep, _: SubmitDep) -> Any:
    """Cancel: a queued job at once, a running one at its next iteration. Cancelling a cancelled job
    returns it; a succeeded or failed one is a 409."""
    row = _get(s, job_id)
    if row.state in ("succeeded", "failed"):
        raise HTTPException(409, detail=f"job {job_id!r} is already {row.state}; only queued or running jobs can be cancelled")
    row = q.request_cancel(s, job_id)
    s.commit()
    return JobPublic.from_row(row, events=q.job_events(s, job_id))


@router.post("/{job_id}/retry", response_model=JobPublic,
             responses=documented({404: NO_JOB, 409: "The job is not failed, or an identical job is queued or running",
                                   503: BROKER_DOWN}))
def retry_job(job_id: JobId, s: SessionDep, queue: QueueDep, _: SubmitDep) -> Any:
    """Queue a failed job again; it resumes from its last checkpoint when it has one."""
    _get(s, job_id)
    try:
        row = q.retry_job(s, job_id)
    except q.JobStateError as e:
        raise HTTPException(409, detail=str(e)) from e
    s.commit()
    _enqueue(queue, row.id)
    return JobPublic.from_row(row, events=q.job_events(s, job_id))
