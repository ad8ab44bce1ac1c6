"""The registry's tables (SQLAlchemy 2 typed declarative). Names are part of the service contract.

Datetimes are aware UTC (``db.UTCDateTime``); dict/list columns are JSON; both work on
PostgreSQL and SQLite. ``guidance_key`` ("" or ``repr(float(guidance))``) stands in for a
nullable guidance scale wherever it is part of a key: NULLs never collide in a unique index.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import (
    JSON,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from .db import Base, utcnow

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATES = ("queued", "running")
FINISHED_STATES = ("succeeded", "failed", "cancelled")
JOB_PHASES = ("teacher", "training", "evaluation")
EVENT_KINDS = (
    "submitted", "started", "phase", "checkpoint", "resumed", "cancel_requested", "cancelled",
    "succeeded", "failed", "requeued", "checkpoint_pruned",
)
SCHEDULE_EVENT_KINDS = ("created", "promoted")


def new_job_id() -> str:
    return uuid.uuid4().hex


class ModelRow(Base):
    """A catalog entry: ``spec`` is ``registry.catalog.ModelSpec.to_dict()``."""

    __tablename__ = "models"

    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    spec: Mapped[dict[str, Any]]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class JobRow(Base):
    """One LD3 job: what was asked, where it stands, and what it produced."""

    __tablename__ = "jobs"
    __table_args__ = (
        # At most one queued-or-running job per fingerprint: duplicates are refused by the database.
        Index(
            "uq_jobs_active_fingerprint", "fingerprint", unique=True,
            postgresql_where=text("state IN ('queued', 'running')"),
            sqlite_where=text("state IN ('queued', 'running')"),
        ),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_job_id)
    model_key: Mapped[str] = mapped_column(String(128), ForeignKey("models.key"), index=True)
    solver: Mapped[str] = mapped_column(String(32))
    nfe: Mapped[int]
    options: Mapped[dict[str, Any]]
    fingerprint: Mapped[str] = mapped_column(String(64), index=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), unique=True)
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    phase: Mapped[str | None] = mapped_column(String(16))
    progress_done: Mapped[int] = mapped_column(default=0)
    progress_total: Mapped[int] = mapped_column(default=0)
    loss_current: Mapped[float | None]
    loss_best: Mapped[float | None]
    eta_s: Mapped[float | None]
    worker: Mapped[str | None] = mapped_column(String(255))
    heartbeat_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    attempts: Mapped[int] = mapped_column(default=0)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    error: Mapped[str | None] = mapped_column(Text)
    curve: Mapped[list[Any]] = mapped_column(default=list)
    schedule_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("schedule_versions.id", use_alter=True, name="fk_jobs_schedule_version_id_schedule_versions")
    )
    result: Mapped[dict[str, Any] | None]
    # The version the job published; read only (``registry.jobs.finish_success`` sets the id).
    schedule_version: Mapped[ScheduleVersionRow | None] = relationship(foreign_keys=[schedule_version_id], viewonly=True)


class JobEventRow(Base):
    """Something that happened to a job (kind in ``EVENT_KINDS``)."""

    __tablename__ = "job_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, default="")
    data: Mapped[dict[str, Any] | None]


class CheckpointRow(Base):
    """The latest LD3 training state of a job (``torch.save`` bytes); one row per job, overwritten."""

    __tablename__ = "job_checkpoints"

    job_id: Mapped[str] = mapped_column(String(32), ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    iteration: Mapped[int]
    data: Mapped[bytes] = mapped_column(LargeBinary)
    saved_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ScheduleVersionRow(Base):
    """An immutable learned schedule for (model, solver, nfe, guidance), numbered 1, 2, ..."""

    __tablename__ = "schedule_versions"
    __table_args__ = (UniqueConstraint("model_key", "solver", "nfe", "guidance_key", "version"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    model_key: Mapped[str] = mapped_column(String(128), ForeignKey("models.key"))
    solver: Mapped[str] = mapped_column(String(32))
    nfe: Mapped[int]
    guidance: Mapped[float | None]
    guidance_key: Mapped[str] = mapped_column(String(32), default="")
    version: Mapped[int]
    t_steps: Mapped[list[Any]]
    t_model: Mapped[list[Any]]
    time_space: Mapped[str] = mapped_column(String(64))
    sigmas: Mapped[list[Any]]
    model_timesteps: Mapped[list[Any]]
    schedule_config: Mapped[dict[str, Any]]
    source: Mapped[str] = mapped_column(String(32))
    model_sha256: Mapped[str | None] = mapped_column(String(64))
    config: Mapped[dict[str, Any]]
    seed: Mapped[int]
    code_version: Mapped[str] = mapped_column(String(64))
    val_loss: Mapped[float | None]
    quality: Mapped[dict[str, Any]]
    job_id: Mapped[str | None] = mapped_column(String(32), ForeignKey("jobs.id"))
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    samples_png: Mapped[bytes | None] = mapped_column(LargeBinary, deferred=True)  # loaded only when asked for


class ActiveScheduleRow(Base):
    """Which version is served for (model, solver, nfe, guidance); promote/rollback move it."""

    __tablename__ = "active_schedules"

    model_key: Mapped[str] = mapped_column(String(128), ForeignKey("models.key"), primary_key=True)
    solver: Mapped[str] = mapped_column(String(32), primary_key=True)
    nfe: Mapped[int] = mapped_column(primary_key=True)
    guidance_key: Mapped[str] = mapped_column(String(32), primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("schedule_versions.id"))
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow)


class ScheduleEventRow(Base):
    """Audit trail of the active pointers: a version created, a version promoted (or rolled back to)."""

    __tablename__ = "schedule_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    kind: Mapped[str] = mapped_column(String(16))
    model_key: Mapped[str] = mapped_column(String(128), index=True)
    solver: Mapped[str] = mapped_column(String(32))
    nfe: Mapped[int]
    guidance_key: Mapped[str] = mapped_column(String(32))
    version_id: Mapped[int] = mapped_column(ForeignKey("schedule_versions.id"))
    previous_version_id: Mapped[int | None] = mapped_column(ForeignKey("schedule_versions.id"))
    actor: Mapped[str | None] = mapped_column(String(255))


class ApiKeyRow(Base):
    """An API key, stored as its sha256; ``prefix`` (first 8 chars) is for display only."""

    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(8))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[dt.datetime | None]


__all__ = [
    "Base", "ModelRow", "JobRow", "JobEventRow", "CheckpointRow", "ScheduleVersionRow", "ActiveScheduleRow",
    "ScheduleEventRow", "ApiKeyRow", "JOB_STATES", "ACTIVE_STATES", "FINISHED_STATES", "JOB_PHASES",
    "EVENT_KINDS", "SCHEDULE_EVENT_KINDS", "new_job_id",
]
