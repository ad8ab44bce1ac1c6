"""The Celery task (a job id in, everything else loaded from the registry) and the worker hooks.

- ``ld3.run_job``: claims and runs the job (``worker.runner.execute``). Transient database
  errors are retried a bounded number of times, later than the stale threshold so that the
  next attempt can claim the job again; every other error is recorded on the job.
- At worker start: check the broker setting, re-enqueue orphaned jobs, and keep doing it
  from a daemon thread (``worker.reaper``).
- At warm shutdown (SIGTERM): the running job stops at its next iteration, checkpointed, and
  is queued again (a new message) for another worker to resume.

No torch at import: the runner is imported inside the task.
"""

from __future__ import annotations

import functools
import logging
import os
import threading

from celery import Task, signals
from sqlalchemy.orm import Session, sessionmaker

from registry.db import DATABASE_UNREACHABLE, make_engine, make_session_factory
from registry.settings import Settings, get_settings

from .celery_app import app
from .queue import TASK_NAME, CeleryQueue
from .reaper import Reaper

log = logging.getLogger(__name__)

MAX_RETRIES = 3
SHUTDOWN = threading.Event()  # set at warm shutdown: the job in progress stops and stays resumable


@functools.cache
def context() -> tuple[Settings, sessionmaker[Session]]:
    """The worker's settings and session factory, made once per process."""
    settings = get_settings()
    return settings, make_session_factory(make_engine(settings.database_url))


def worker_name(hostname: str | None) -> str:
    """Who holds a claimed job: the Celery node name and the process id."""
    return f"{hostname or 'celery'}:{os.getpid()}"


@app.task(name=TASK_NAME, bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=MAX_RETRIES)
def run_job(self: Task, job_id: str) -> str:
    """Run one LD3 job; returns what became of it (see ``worker.runner.execute``)."""
    from .runner import execute  # torch is imported here, in the worker only

    settings, factory = context()
    try:
        outcome = execute(job_id, session_factory=factory, settings=settings,
                          worker_name=worker_name(self.request.hostname), interrupt=SHUTDOWN)
    except DATABASE_UNREACHABLE as e:
        log.warning("job %s: database error, retry %d/%d: %s", job_id, self.request.retries + 1, MAX_RETRIES, e)
        raise self.retry(exc=e, countdown=settings.stale_after_s * 1.5 * 2**self.request.retries) from e
    if outcome == "released":  # shutting down: queued again, for another worker to resume now
        CeleryQueue(app).enqueue(job_id)
    return outcome


@signals.worker_process_init.connect
def _own_connections_after_fork(**_: object) -> None:
    """A prefork pool child must not share its parent's database connections."""
    if context.cache_info().currsize:
        context()[1].kw["bind"].dispose(close=False)
        context.cache_clear()


@signals.worker_init.connect
def _check_broker(**_: object) -> None:
    if not get_settings().broker_url:
        raise RuntimeError("LD3_BROKER_URL is not set: a Celery worker needs a broker "
                           "(e.g. redis://127.0.0.1:6379/0); without one, `ld3 serve` runs jobs itself")


@signals.worker_ready.connect
def _start_reaper(sender: object = None, **_: object) -> None:
    settings, factory = context()
    queue = CeleryQueue(app)
    every = max(1.0, min(settings.stale_after_s / 2, 60.0))
    Reaper(factory, queue, stale_after_s=settings.stale_after_s, every_s=every, pending=queue.pending_job_ids,
           checkpoint_retention_s=settings.checkpoint_retention_s).start()


@signals.worker_shutting_down.connect
def _interrupt_job(**_: object) -> None:
    SHUTDOWN.set()
