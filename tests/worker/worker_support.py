"""Helpers of the runner, embedded-runner, queue and Celery tests (their fixtures are in conftest.py).

Jobs run on the analytic ``gmm2d-edm`` model with tiny configurations (seconds).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.orm import Session, sessionmaker

from registry import jobs as q
from registry import models
from registry.db import make_engine, make_session_factory, session_scope
from registry.schemas import JobCreate, JobOptions
from registry.settings import Settings
from registry.tables import JobRow

ROOT = Path(__file__).resolve().parents[2]
CELERY = Path(sys.executable).parent / "celery"
TEST_REDIS_URL = os.environ.get("LD3_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
MODEL = "gmm2d"
MODEL_SPEC = {"key": MODEL, "format": "analytic", "location": "gmm2d-edm", "schedule": "builtin",
              "prediction": "builtin", "sample_shape": [2]}
SOLVER, NFE = "euler", 4


def factory_with_model(url: str) -> Iterator[sessionmaker[Session]]:
    """A session factory on ``url`` whose catalog holds the test model (generator body of a fixture)."""
    engine = make_engine(url)
    f = make_session_factory(engine)
    with session_scope(f) as s:
        models.upsert_model(s, MODEL_SPEC)
    yield f
    engine.dispose()


def tiny_options(**kw: Any) -> dict[str, Any]:
    """A job of ``n_train // 2 * epochs`` iterations on the 2-D mixture, l2 loss (about 15 ms each)."""
    base = dict(loss="l2", teacher_solver="euler", teacher_nfe=50, teacher_heuristic="edm", n_train=20, n_val=10,
                n_test=20, starts=2, phase1_epochs=1, phase2_epochs=1, remat=False, val_every=5)
    return JobOptions(**{**base, **kw}).model_dump(mode="json")


def worker_settings(db_url: str, **kw: Any) -> Settings:
    base = dict(database_url=db_url, broker_url=None, model_root=str(ROOT / "models"), device="cpu",
                heartbeat_s=0.1, stale_after_s=60.0, progress_every_s=0.1, checkpoint_every_s=0.01, poll_interval_s=0.2)
    return Settings(**{**base, **kw})


def submit(factory: sessionmaker[Session], **options: Any) -> str:
    """A queued job on the analytic model (not enqueued anywhere)."""
    with session_scope(factory) as s:
        job, created = q.create_job(s, JobCreate(model=MODEL, solver=SOLVER, nfe=NFE, options=tiny_options(**options)))
        assert created
        return job.id


def job(factory: sessionmaker[Session], job_id: str) -> JobRow:
    with session_scope(factory) as s:
        return q.get_job(s, job_id)


def events(factory: sessionmaker[Session], job_id: str) -> list[tuple[str, str, dict | None]]:
    with session_scope(factory) as s:
        return [(e.kind, e.message, e.data) for e in q.job_events(s, job_id)]


def checkpoint_iteration(factory: sessionmaker[Session], job_id: str) -> int | None:
    with session_scope(factory) as s:
        ck = q.load_checkpoint(s, job_id)
        return None if ck is None else ck.iteration


def wait_for(predicate: Callable[[], Any], timeout: float, what: str, every: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what`` after ``timeout``."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if value := predicate():
            return value
        time.sleep(every)
    pytest.fail(f"timed out after {timeout} s waiting for {what}")


def failed_with_checkpoint(factory: sessionmaker[Session], *, failed_s_ago: float, **options: Any) -> str:
    """A job that failed ``failed_s_ago`` seconds ago and kept its checkpoint (iteration 3)."""
    import datetime as dt

    from sqlalchemy import update

    from registry.db import utcnow

    job_id = submit(factory, **options)
    with session_scope(factory) as s:
        q.claim_job(s, job_id, worker="w-dead", stale_after_s=60.0)
        q.save_checkpoint(s, job_id, iteration=3, data=b"state")
        q.finish_failure(s, job_id, reason="boom", worker="w-dead")
        s.execute(update(JobRow).where(JobRow.id == job_id)
                  .values(finished_at=utcnow() - dt.timedelta(seconds=failed_s_ago)))
    return job_id


class Workers:
    """Starts ``celery worker`` processes (own process groups, logs under ``tmp``) and kills them all at the end.

    ``env``: ``LD3_*`` variables that replace the fast test defaults below."""

    def __init__(self, db_url: str, tmp: Path, **env: str) -> None:
        self.db_url, self.tmp, self.procs = db_url, tmp, {}
        self.env = {
            **os.environ, "LD3_DATABASE_URL": db_url, "LD3_BROKER_URL": TEST_REDIS_URL, "LD3_MODEL_ROOT": str(ROOT / "models"),
            "LD3_DEVICE": "cpu", "LD3_HEARTBEAT_S": "0.2", "LD3_STALE_AFTER_S": "2", "LD3_PROGRESS_EVERY_S": "0.2",
            "LD3_CHECKPOINT_EVERY_S": "0.05", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", **env,
        }

    def start(self, name: str) -> subprocess.Popen:
        log = open(self.tmp / f"{name}.log", "wb")
        proc = subprocess.Popen(
            [str(CELERY), "-A", "worker.celery_app", "worker", "-Q", "gpu", "-c", "1", "--pool", "solo", "-n", f"{name}@%h",
             "--loglevel", "INFO", "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self.procs[name] = proc
        return proc

    def kill(self, name: str) -> None:
        proc = self.procs[name]
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n" + p.read_text(errors="replace")[-3000:] for p in sorted(self.tmp.glob("*.log")))

    def close(self) -> None:
        for name in self.procs:
            self.kill(name)


def image_job(sqlite_url: str, model_root: Path, spec: dict[str, Any], options: dict[str, Any], *, solver: str = "euler",
              nfe: int = 3) -> tuple[sessionmaker[Session], Settings, str]:
    """``spec`` in the catalog of a fresh database and one small job on it: (factory, settings, job id)."""
    factory_ = make_session_factory(make_engine(sqlite_url))
    with session_scope(factory_) as s:
        models.upsert_model(s, spec)
        small = dict(teacher_nfe=6, n_train=4, n_val=2, n_test=3, batch_size=2, starts=1, heuristics=["logsnr", "edm"])
        row, _ = q.create_job(s, JobCreate(model=spec["key"], solver=solver, nfe=nfe,
                                           options=tiny_options(**{**small, **options})))
        job_id = row.id
    return factory_, worker_settings(sqlite_url, model_root=str(model_root)), job_id


def tiny_spec(root: Path, name: str, **kw: Any) -> dict[str, Any]:
    """The catalog entry of a tiny diffusers model saved under ``root/name`` (``tiny_models``)."""
    from worker.loaders import weights_sha256

    return {"key": name, "format": "diffusers", "location": name, "schedule": "from_scheduler_config",
            "prediction": "from_scheduler_config", "sample_shape": [1, 8, 8], "sha256": weights_sha256(root / name), **kw}
