"""Initial registry schema: models, jobs and their events and checkpoints, schedule versions,
active-schedule pointers and their audit trail, API keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-26

``jobs.schedule_version_id`` and ``schedule_versions.job_id`` reference each other: on
PostgreSQL the first is added once both tables exist; SQLite cannot add a constraint to an
existing table, but accepts a reference to a table created later, so it is declared inline.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ACTIVE_JOB = sa.text("state IN ('queued', 'running')")
JOB_VERSION_FK = "fk_jobs_schedule_version_id_schedule_versions"


def _utc(nullable: bool = False) -> dict:
    return {"type_": sa.DateTime(timezone=True), "nullable": nullable}


def upgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"

    op.create_table(
        "models",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", **_utc()),
        sa.PrimaryKeyConstraint("key", name="pk_models"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("prefix", sa.String(8), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON(), nullable=False),
        sa.Column("created_at", **_utc()),
        sa.Column("revoked_at", **_utc(True)),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.UniqueConstraint("key_hash", name="uq_api_keys_key_hash"),
    )

    # Jobs.
    version_fk = [sa.ForeignKeyConstraint(["schedule_version_id"], ["schedule_versions.id"], name=JOB_VERSION_FK)] if sqlite else []
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("model_key", sa.String(128), nullable=False),
        sa.Column("solver", sa.String(32), nullable=False),
        sa.Column("nfe", sa.Integer(), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("fingerprint", sa.String(64), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("phase", sa.String(16), nullable=True),
        sa.Column("progress_done", sa.Integer(), nullable=False),
        sa.Column("progress_total", sa.Integer(), nullable=False),
        sa.Column("loss_current", sa.Double(), nullable=True),
        sa.Column("loss_best", sa.Double(), nullable=True),
        sa.Column("eta_s", sa.Double(), nullable=True),
        sa.Column("worker", sa.String(255), nullable=True),
        sa.Column("heartbeat_at", **_utc(True)),
        sa.Column("created_at", **_utc()),
        sa.Column("started_at", **_utc(True)),
        sa.Column("finished_at", **_utc(True)),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("curve", sa.JSON(), nullable=False),
        sa.Column("schedule_version_id", sa.Integer(), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["model_key"], ["models.key"], name="fk_jobs_model_key_models"),
        *version_fk,
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
        sa.UniqueConstraint("idempotency_key", name="uq_jobs_idempotency_key"),
    )
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_jobs_fingerprint", "jobs", ["fingerprint"])
    op.create_index("ix_jobs_model_key", "jobs", ["model_key"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    # At most one queued-or-running job per fingerprint (the dedupe of identical submissions).
    op.create_index("uq_jobs_active_fingerprint", "jobs", ["fingerprint"], unique=True,
                    postgresql_where=ACTIVE_JOB, sqlite_where=ACTIVE_JOB)

    op.create_table(
        "job_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("at", **_utc()),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_events_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_job_events"),
    )
    op.create_index("ix_job_events_job_id", "job_events", ["job_id"])
    op.create_table(
        "job_checkpoints",
        sa.Column("job_id", sa.String(32), nullable=False),
        sa.Column("iteration", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("saved_at", **_utc()),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_job_checkpoints_job_id_jobs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("job_id", name="pk_job_checkpoints"),
    )

    # Schedules.
    op.create_table(
        "schedule_versions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("model_key", sa.String(128), nullable=False),
        sa.Column("solver", sa.String(32), nullable=False),
        sa.Column("nfe", sa.Integer(), nullable=False),
        sa.Column("guidance", sa.Double(), nullable=True),
        sa.Column("guidance_key", sa.String(32), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("t_steps", sa.JSON(), nullable=False),
        sa.Column("t_model", sa.JSON(), nullable=False),
        sa.Column("time_space", sa.String(64), nullable=False),
        sa.Column("sigmas", sa.JSON(), nullable=False),
        sa.Column("model_timesteps", sa.JSON(), nullable=False),
        sa.Column("schedule_config", sa.JSON(), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("model_sha256", sa.String(64), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("code_version", sa.String(64), nullable=False),
        sa.Column("val_loss", sa.Double(), nullable=True),
        sa.Column("quality", sa.JSON(), nullable=False),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("created_at", **_utc()),
        sa.Column("samples_png", sa.LargeBinary(), nullable=True),
        sa.ForeignKeyConstraint(["job_id"], ["jobs.id"], name="fk_schedule_versions_job_id_jobs"),
        sa.ForeignKeyConstraint(["model_key"], ["models.key"], name="fk_schedule_versions_model_key_models"),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_versions"),
        sa.UniqueConstraint("model_key", "solver", "nfe", "guidance_key", "version",
                            name="uq_schedule_versions_model_key_solver_nfe_guidance_key_version"),
    )
    if not sqlite:
        op.create_foreign_key(JOB_VERSION_FK, "jobs", "schedule_versions", ["schedule_version_id"], ["id"])
    op.create_table(
        "active_schedules",
        sa.Column("model_key", sa.String(128), nullable=False),
        sa.Column("solver", sa.String(32), nullable=False),
        sa.Column("nfe", sa.Integer(), nullable=False),
        sa.Column("guidance_key", sa.String(32), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("updated_at", **_utc()),
        sa.ForeignKeyConstraint(["model_key"], ["models.key"], name="fk_active_schedules_model_key_models"),
        sa.ForeignKeyConstraint(["version_id"], ["schedule_versions.id"], name="fk_active_schedules_version_id_schedule_versions"),
        sa.PrimaryKeyConstraint("model_key", "solver", "nfe", "guidance_key", name="pk_active_schedules"),
    )
    op.create_table(
        "schedule_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at", **_utc()),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("model_key", sa.String(128), nullable=False),
        sa.Column("solver", sa.String(32), nullable=False),
        sa.Column("nfe", sa.Integer(), nullable=False),
        sa.Column("guidance_key", sa.String(32), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("previous_version_id", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(255), nullable=True),
        sa.ForeignKeyConstraint(["version_id"], ["schedule_versions.id"], name="fk_schedule_events_version_id_schedule_versions"),
        sa.ForeignKeyConstraint(["previous_version_id"], ["schedule_versions.id"],
                                name="fk_schedule_events_previous_version_id_schedule_versions"),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_events"),
    )
    op.create_index("ix_schedule_events_model_key", "schedule_events", ["model_key"])


def downgrade() -> None:
    # Break the jobs <-> schedule_versions cycle first (SQLite checks it while dropping a table).
    op.execute("UPDATE jobs SET schedule_version_id = NULL")
    if op.get_bind().dialect.name != "sqlite":
        op.drop_constraint(JOB_VERSION_FK, "jobs", type_="foreignkey")
    # Dropping a table drops its indexes; children before parents.
    for table in ("schedule_events", "active_schedules", "schedule_versions", "job_checkpoints", "job_events", "jobs",
                  "api_keys", "models"):
        op.drop_table(table)
