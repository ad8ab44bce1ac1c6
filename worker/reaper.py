"""Re-enqueue the jobs that no runner would otherwise pick up.

Two kinds: running jobs whose heartbeat went stale (their worker died; its message sits
unacknowledged until the visibility timeout, hours away) and queued jobs with no message
waiting in the broker (the broker lost it, or the enqueue after the commit never happened).
Every Celery worker does this at start and then periodically. A job that already has a
message waiting is skipped, so reapers do not pile up duplicates; the duplicates that still
happen (two reapers at once) are harmless: the claim is atomic. No torch here.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from typing import Callable

from sqlalchemy.orm import Session, sessionmaker

from registry import jobs as q
from registry.db import session_scope, utcnow

from .queue import JobQueue

log = logging.getLogger(__name__)


def requeue_orphans(
    factory: sessionmaker[Session], queue: JobQueue, *, stale_after_s: float, pending: set[str] | None,
    queued_grace_s: float = 10.0,
) -> list[str]:
    """Enqueue stale running jobs and message-less queued jobs; returns their ids.

    ``pending``: job ids with a message waiting in the broker (``CeleryQueue.pending_job_ids``),
    or None when the broker cannot tell: then queued jobs are left alone (re-enqueueing every
    queued job on every pass would flood the queue) and only stale jobs are handled.
    Queued jobs younger than ``queued_grace_s`` are skipped: their enqueue may be on its way.
    """
    cutoff = utcnow() - dt.timedelta(seconds=queued_grace_s)
    with session_scope(factory) as s:
        stale = {j.id: f"heartbeat older than {stale_after_s:g} s (worker {j.worker})"
                 for j in q.stale_jobs(s, stale_after_s=stale_after_s)}
        queued = {} if pending is None else {
            j.id: "queued with no message in the broker" for j in q.queued_jobs(s) if j.created_at < cutoff}
    todo = {**queued, **stale}
    done = []
    for job_id, why in todo.items():
        if pending is not None and job_id in pending:
            continue
        queue.enqueue(job_id)
        with session_scope(factory) as s:
            q.add_event(s, job_id, "requeued", f"re-enqueued: {why}")
        done.append(job_id)
        log.info("job %s re-enqueued: %s", job_id, why)
    return done


def prune_failed_checkpoints(factory: sessionmaker[Session], retention_s: float) -> list[str]:
    """Delete the checkpoints of jobs failed more than ``retention_s`` ago (0: keep them all)."""
    if retention_s <= 0:
        return []
    with session_scope(factory) as s:
        pruned = q.prune_checkpoints(s, older_than_s=retention_s)
    for job_id in pruned:
        log.info("job %s: checkpoint pruned %g s after its failure", job_id, retention_s)
    return pruned


class Reaper:
    """Calls ``requeue_orphans`` (and ``prune_failed_checkpoints`` with ``checkpoint_retention_s``)
    every ``every_s`` seconds from a daemon thread, the first time at once.

    A job it re-enqueued is not sent again for ``resend_after_s`` (default: the larger of
    ``stale_after_s`` and a minute): between a worker taking the message and its claim (the
    first task of a worker imports torch) the job is still stale and its message no longer waiting.
    """

    def __init__(self, factory: sessionmaker[Session], queue: JobQueue, *, stale_after_s: float, every_s: float,
                 pending: Callable[[], set[str] | None], resend_after_s: float | None = None,
                 checkpoint_retention_s: float = 0.0) -> None:
        self.factory, self.queue, self.stale_after_s, self.every_s = factory, queue, stale_after_s, every_s
        self.checkpoint_retention_s = checkpoint_retention_s
        self.pending = pending
        self.resend_after_s = max(stale_after_s, 60.0) if resend_after_s is None else resend_after_s
        self._sent: dict[str, float] = {}  # job id -> when this reaper last enqueued it (monotonic)
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="ld3-reaper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._done.set()
        self._thread.join(timeout=10)

    def run_once(self) -> list[str]:
        now = time.monotonic()
        self._sent = {j: t for j, t in self._sent.items() if now - t < self.resend_after_s}
        pending = self.pending()
        if pending is not None:
            pending = pending | set(self._sent)
        done = requeue_orphans(self.factory, self.queue, stale_after_s=self.stale_after_s, pending=pending)
        self._sent.update((j, now) for j in done)
        prune_failed_checkpoints(self.factory, self.checkpoint_retention_s)
        return done

    def _loop(self) -> None:
        while not self._done.is_set():
            try:
                self.run_once()
            except Exception as e:  # noqa: BLE001 - the reaper must outlive a database or broker outage
                log.warning("reaper pass failed: %s", e)
            self._done.wait(self.every_s)
