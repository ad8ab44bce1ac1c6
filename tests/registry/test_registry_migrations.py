"""The Alembic migrations: up, down, up again on the real PostgreSQL and on SQLite, and the
migrated schema equal to the tables' metadata (autogenerate finds nothing to do)."""

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect, text

from registry import jobs as q
from registry.db import Base, downgrade, make_engine, make_session_factory, session_scope, upgrade
from registry.models import upsert_model
from registry.schemas import JobCreate, ScheduleVersionCreate

TABLES = {t.name for t in Base.metadata.sorted_tables}


def schema_diff(engine) -> list:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return compare_metadata(ctx, Base.metadata)


def fill(engine, spec) -> None:
    """One finished job with its version: rows in every table the downgrade must get rid of."""
    factory = make_session_factory(engine)
    with session_scope(factory) as s:
        upsert_model(s, spec)
        job, _ = q.create_job(s, JobCreate(model="gmm", solver="euler", nfe=2))
        q.claim_job(s, job.id, worker="w", stale_after_s=60)
        q.save_checkpoint(s, job.id, iteration=1, data=b"x")
        t = [80.0, 1.0, 0.002]
        q.finish_success(s, job.id, result={}, version=ScheduleVersionCreate(
            model_key="gmm", solver="euler", nfe=2, t_steps=t, t_model=t, time_space="edm", sigmas=t,
            model_timesteps=t, schedule_config={}, source="ld3", config={}, seed=0, code_version="t", quality={}))


def up_down_up(url: str, spec: dict) -> None:
    engine = make_engine(url)
    try:
        upgrade(url)
        assert TABLES <= set(inspect(engine).get_table_names())
        assert schema_diff(engine) == []
        fill(engine, spec)
        downgrade(url)
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        upgrade(engine)  # the engine form, as the embedded mode calls it
        assert schema_diff(engine) == []
        with engine.connect() as conn:
            assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0001"
            assert conn.execute(text("SELECT count(*) FROM jobs")).scalar() == 0
    finally:
        engine.dispose()


def test_postgres_up_down_up(make_pg_database, analytic_spec):
    up_down_up(make_pg_database(migrate=False), analytic_spec)


def test_sqlite_up_down_up(tmp_path, analytic_spec):
    up_down_up(f"sqlite:///{tmp_path / 'fresh' / 'ld3.db'}", analytic_spec)
