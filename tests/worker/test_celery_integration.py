"""Real Celery workers (subprocesses) on the real Redis and a fresh PostgreSQL database.

A job end to end; cancellation; a worker killed (SIGKILL) mid-job after its first checkpoint
and the job finished by a new worker from that checkpoint, learning exactly what the
uninterrupted job learned. Jobs run on the analytic 2-D mixture (seconds). Every worker
process started here is killed at the end.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy.orm import Session, sessionmaker
from worker_support import (
    MODEL,
    NFE,
    SOLVER,
    TEST_REDIS_URL,
    Workers,
    checkpoint_iteration,
    events,
    factory_with_model,
    job,
    tiny_options,
    wait_for,
)

from registry import jobs as q
from registry.db import session_scope
from registry.schemas import JobCreate
from registry.settings import Settings
from worker.celery_app import make_celery
from worker.queue import CeleryQueue

TIMEOUT = 120  # per wait; a job here takes seconds, a worker start a few more


@pytest.fixture(scope="module")
def db_url(make_pg_database: Callable[..., str]) -> str:
    return make_pg_database()


@pytest.fixture(scope="module")
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    yield from factory_with_model(db_url)


@pytest.fixture(scope="module")
def workers(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    w = Workers(db_url, tmp_path_factory.mktemp("celery-workers"))
    yield w
    w.close()


@pytest.fixture(scope="module")
def worker(workers: Workers, broker_module) -> subprocess.Popen:
    return workers.start("w1")



@pytest.fixture(scope="module")
def queue(broker_module) -> Iterator[CeleryQueue]:
    qu = CeleryQueue(make_celery(Settings(broker_url=TEST_REDIS_URL)))
    yield qu
    qu.app.close()


def submit(factory, queue: CeleryQueue, **options) -> str:
    with session_scope(factory) as s:
        row, created = q.create_job(s, JobCreate(model=MODEL, solver=SOLVER, nfe=NFE, options=tiny_options(**options)))
        assert created
    queue.enqueue(row.id)
    return row.id


def await_state(factory, workers: Workers, job_id: str, *states: str) -> None:
    def reached():
        return job(factory, job_id).state in states

    try:
        wait_for(reached, TIMEOUT, f"job {job_id} to become {'/'.join(states)}", every=0.05)
    except pytest.fail.Exception:
        print(workers.logs())
        raise


LONG = dict(n_train=100, phase1_epochs=1, phase2_epochs=2, seed=7)  # 150 iterations: a few seconds


@pytest.fixture(scope="module")
def reference(factory, queue, workers, worker) -> str:
    """A job run to its end, uninterrupted, on worker w1."""
    job_id = submit(factory, queue, **LONG)
    await_state(factory, workers, job_id, "succeeded", "failed")
    return job_id


def test_a_job_runs_end_to_end_on_a_celery_worker(factory, workers, reference):
    row = job(factory, reference)
    assert row.state == "succeeded", (row.error, workers.logs())
    assert row.worker.startswith("w1@") and row.attempts == 1 and row.schedule_version_id is not None
    kinds = [k for k, _, _ in events(factory, reference)]
    assert kinds[:2] == ["submitted", "started"] and kinds[-1] == "succeeded"


def test_a_running_job_is_cancelled_on_request(factory, queue, workers, worker, reference):
    job_id = submit(factory, queue, n_train=200, phase1_epochs=2, phase2_epochs=3, seed=8)  # 500 iterations
    wait_for(lambda: (r := job(factory, job_id)).phase == "training" and r.progress_done >= 5, TIMEOUT, "training")
    with session_scope(factory) as s:
        q.request_cancel(s, job_id)
    await_state(factory, workers, job_id, "cancelled", "succeeded", "failed")
    row = job(factory, job_id)
    assert row.state == "cancelled" and row.progress_done < row.progress_total


def test_a_killed_workers_job_resumes_on_a_new_worker_from_its_checkpoint(factory, queue, workers, worker, reference):
    job_id = submit(factory, queue, **LONG)
    wait_for(lambda: (checkpoint_iteration(factory, job_id) or 0) > 0, TIMEOUT, "the first checkpoint", every=0.01)
    workers.kill("w1")
    row = job(factory, job_id)
    assert row.state == "running" and row.worker.startswith("w1@"), "the job ended before the kill: make it longer"
    killed_at = checkpoint_iteration(factory, job_id)

    workers.start("w2")  # its reaper re-enqueues the job once w1's heartbeat is stale
    await_state(factory, workers, job_id, "succeeded", "failed", "cancelled")
    row, ref = job(factory, job_id), job(factory, reference)
    assert row.state == "succeeded", (row.error, workers.logs())
    assert row.attempts == 2 and row.worker.startswith("w2@")
    resumed = [d for k, _, d in events(factory, job_id) if k == "resumed"]
    assert len(resumed) == 1 and resumed[0]["iteration"] == killed_at > 0
    assert "requeued" in [k for k, _, _ in events(factory, job_id)]
    for key in ("learned_t_steps", "learned_t_model", "t_steps", "test"):
        assert row.result[key] == ref.result[key], key


def test_a_job_interrupted_by_a_warm_shutdown_resumes_on_another_worker(factory, queue, workers, worker, reference):
    job_id = submit(factory, queue, **LONG)
    wait_for(lambda: (checkpoint_iteration(factory, job_id) or 0) > 0, TIMEOUT, "the first checkpoint", every=0.01)
    holder = job(factory, job_id).worker.split("@")[0]
    proc = workers.procs[holder]
    proc.send_signal(signal.SIGTERM)  # warm shutdown: the job stops at its next iteration, not cancelled
    assert proc.wait(TIMEOUT) == 0
    row = job(factory, job_id)
    assert row.state in ("queued", "running") and not row.cancel_requested, workers.logs()
    assert "requeued" in [k for k, _, _ in events(factory, job_id)]

    workers.start("w3")
    await_state(factory, workers, job_id, "succeeded", "failed", "cancelled")
    row, ref = job(factory, job_id), job(factory, reference)
    assert row.state == "succeeded" and row.attempts == 2 and not row.worker.startswith(f"{holder}@")
    assert [k for k, _, _ in events(factory, job_id)].count("resumed") == 1
    assert row.result["learned_t_steps"] == ref.result["learned_t_steps"]
