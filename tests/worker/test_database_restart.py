"""Chaos: PostgreSQL stopped for a few seconds and started again under a running job and under reads.

A real API process (uvicorn, distributed mode) and a real Celery worker, on the real Redis and
a fresh database of the machine's PostgreSQL. While the worker trains a job and a reader polls
``GET /schedules`` (the active version and a pinned one) and ``GET /jobs/{id}``, the cluster is
stopped (``pg_ctlcluster ... stop -m fast``: every connection is cut) and started again. Then:
the job succeeded exactly once; the schedule reads never failed (served stale from the API's
cache meanwhile); the job reads saw nothing worse than a 503; every read is fresh again within
seconds; no job is left running or queued. PostgreSQL is started again whatever happens.

Nothing here skips: a missing PostgreSQL, Redis or ``pg_ctlcluster`` fails the test.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import psycopg
import pytest
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from worker_support import (
    MODEL,
    NFE,
    ROOT,
    SOLVER,
    TEST_REDIS_URL,
    Workers,
    events,
    factory_with_model,
    job,
    tiny_options,
    wait_for,
)

from registry import jobs as q
from registry import keys
from registry.db import session_scope
from registry.schemas import JobCreate
from registry.settings import Settings
from registry.tables import JobRow, ScheduleVersionRow
from worker.celery_app import make_celery
from worker.queue import CeleryQueue

PG_CLUSTER = os.environ.get("LD3_TEST_PG_CLUSTER", "15/main").split("/")  # pg_ctlcluster's version and name
OUTAGE_S = 4.0
RECOVERY_S = 10.0  # every read is fresh again this long after the server is back
TIMEOUT = 180  # per wait: a worker start imports torch on a busy machine
LONG = dict(n_train=800, phase1_epochs=4, phase2_epochs=6, seed=11)  # 4000 iterations (~20 s): training past the outage
STALE_HEADER = "X-LD3-Stale"


def pg_ctl(action: str) -> subprocess.CompletedProcess:
    mode = ["-m", "fast"] if action == "stop" else []
    return subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", *PG_CLUSTER, action, *mode],
                          capture_output=True, text=True, timeout=120)


def pg_answers(url: str) -> bool:
    try:
        with psycopg.connect(make_url(url).set(drivername="postgresql").render_as_string(hide_password=False),
                             connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.OperationalError:
        return False


def ensure_pg_running(url: str) -> None:
    """Start the cluster if it does not answer (other work on this machine needs it)."""
    if not pg_answers(url):
        pg_ctl("start")
    wait_for(lambda: pg_answers(url), 60, "PostgreSQL to answer again", every=0.2)


@pytest.fixture(scope="module")
def db_url(make_pg_database: Callable[..., str]) -> str:
    return make_pg_database()


@pytest.fixture(scope="module")
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    yield from factory_with_model(db_url)


@pytest.fixture(scope="module")
def queue(broker_module) -> Iterator[CeleryQueue]:
    qu = CeleryQueue(make_celery(Settings(broker_url=TEST_REDIS_URL)))
    yield qu
    qu.app.close()


@pytest.fixture(scope="module")
def workers(db_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workers]:
    # A production-like stale threshold: an outage of seconds is not a dead worker.
    w = Workers(db_url, tmp_path_factory.mktemp("celery-workers"), LD3_STALE_AFTER_S="30")
    yield w
    w.close()


@pytest.fixture(scope="module")
def api(db_url: str, factory, broker_module, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of ``uvicorn --factory api.main:create_app`` on the test database and broker."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "LD3_DATABASE_URL": db_url, "LD3_BROKER_URL": TEST_REDIS_URL,
           "LD3_MODEL_ROOT": str(ROOT / "models"), "LD3_STALE_GRACE_S": "300"}
    log_path = tmp_path_factory.mktemp("api") / "api.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "api.main:create_app", "--host", "127.0.0.1",
             "--port", str(port), "--log-level", "warning"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            assert proc.poll() is None, log_path.read_text(errors="replace")
            return False

    try:
        wait_for(up, 60, "the API process to answer", every=0.2)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)


def submit(factory, queue: CeleryQueue, **options) -> str:
    with session_scope(factory) as s:
        row, created = q.create_job(s, JobCreate(model=MODEL, solver=SOLVER, nfe=NFE, options=tiny_options(**options)))
        assert created
    queue.enqueue(row.id)
    return row.id


def await_end(factory, workers: Workers, job_id: str) -> JobRow:
    try:
        wait_for(lambda: job(factory, job_id).state in ("succeeded", "failed", "cancelled"), TIMEOUT,
                 f"job {job_id} to end", every=0.1)
    except pytest.fail.Exception:
        print(workers.logs())
        raise
    return job(factory, job_id)


class Reader:
    """Polls ``paths`` from a thread; ``seen``: (monotonic time, path, status or error name, stale header)."""

    def __init__(self, url: str, key: str, paths: list[str]) -> None:
        self.url, self.key, self.paths = url, key, paths
        self.seen: list[tuple[float, str, int | str, str | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="reader", daemon=True)

    def __enter__(self) -> "Reader":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)

    def _loop(self) -> None:
        with httpx.Client(base_url=self.url, headers={"X-API-Key": self.key}, timeout=15) as client:
            while not self._stop.is_set():
                for path in self.paths:
                    t = time.monotonic()
                    try:
                        r = client.get(path)
                        self.seen.append((t, path, r.status_code, r.headers.get(STALE_HEADER)))
                    except httpx.HTTPError as e:
                        self.seen.append((t, path, type(e).__name__, None))
                self._stop.wait(0.05)

    def of(self, path: str) -> list[tuple[float, int | str, str | None]]:
        return [(t, status, stale) for t, p, status, stale in self.seen if p == path]


def fresh_again_after(reads: list[tuple[float, int | str, str | None]], t0: float) -> float:
    """Seconds from ``t0`` to the first read after which every read is a fresh 200."""
    bad = [t for t, status, stale in reads if status != 200 or stale is not None]
    last_bad = max([t0, *bad])
    after = [t for t, _, _ in reads if t > last_bad]
    assert after, "no read after the last stale or failed one: the reader stopped too early"
    return after[0] - t0


def test_a_postgres_restart_loses_no_job_and_no_schedule_read(db_url, factory, queue, workers, api):
    with session_scope(factory) as s:
        _, read_key = keys.create_key(s, name="reader", scopes=["schedules:read"])
    workers.start("w1")
    first = await_end(factory, workers, submit(factory, queue, seed=1))  # version 1, active; the worker warm
    assert first.state == "succeeded", (first.error, workers.logs())

    job_id = submit(factory, queue, **LONG)
    active, pinned, job_path = (f"/schedules/{MODEL}/{SOLVER}/{NFE}", f"/schedules/{MODEL}/{SOLVER}/{NFE}?version=1",
                                f"/jobs/{job_id}")
    with Reader(api, read_key, [active, pinned, job_path]) as reader:
        wait_for(lambda: (r := job(factory, job_id)).phase == "training" and r.progress_done >= 5, TIMEOUT,
                 "the job to train", every=0.05)
        try:
            stopped = pg_ctl("stop")
            down_at = time.monotonic()
            assert stopped.returncode == 0, stopped.stderr
            time.sleep(OUTAGE_S)
            started = pg_ctl("start")
            assert started.returncode == 0, started.stderr
        finally:
            ensure_pg_running(db_url)
        up_at = time.monotonic()
        row = job(factory, job_id)
        assert row.state == "running" and row.phase == "training", "the job's end fell into the outage: make it longer"
        row = await_end(factory, workers, job_id)
        wait_for(lambda: time.monotonic() > up_at + RECOVERY_S + 2, RECOVERY_S + 5, "the reads after the outage")

    assert row.state == "succeeded", (row.error, workers.logs())
    assert row.attempts == 1 and workers.procs["w1"].poll() is None  # the worker rode the outage out
    assert [k for k, _, _ in events(factory, job_id)].count("succeeded") == 1
    with session_scope(factory) as s:
        assert s.scalar(select(func.count()).where(ScheduleVersionRow.job_id == job_id)) == 1
        left = s.scalars(select(JobRow.id).where(JobRow.state.in_(("queued", "running")))).all()
    assert left == [], "jobs left running or queued"

    during = [(status, stale) for t, status, stale in reader.of(active) if down_at < t < up_at]
    assert during and all(status == 200 for status, _ in during), during[:20]  # served from the cache
    assert any(stale == "true" for _, stale in during), "no read saw the outage"
    for path in (active, pinned):
        assert all(status == 200 for _, status, _ in reader.of(path)), sorted({s for _, s, _ in reader.of(path)})
    job_statuses = {status for _, status, _ in reader.of(job_path)}
    assert job_statuses <= {200, 503}, job_statuses  # nothing worse than a 503, no dropped connection
    for path in (active, pinned, job_path):
        assert fresh_again_after(reader.of(path), up_at) < RECOVERY_S, path
    assert reader.of(active)[-1][1] == 200
