"""The in-process runner of ``ld3 serve`` without a broker: the database is the queue.

A daemon thread runs queued jobs one at a time, oldest first, through the same
``worker.runner.execute`` as the Celery task. ``EmbeddedQueue.enqueue`` wakes it; it also
polls every ``settings.poll_interval_s``. At start it takes over the jobs a previous process
left running (this host's embedded runner held them, or their heartbeat is stale) and they
resume from their checkpoints. ``stop()`` asks the job in progress to stop at its next
iteration WITHOUT cancelling it: it is checkpointed and left running, and the next start
resumes it.

One embedded runner per database: the runner is named after the host, so a restarted
process recognises its own jobs at once instead of waiting for them to look stale.
"""

from __future__ import annotations

import logging
import socket
import threading
import time

from sqlalchemy.orm import Session, sessionmaker

from registry import jobs as q
from registry.db import session_scope
from registry.settings import Settings

from .queue import EmbeddedQueue
from .reaper import prune_failed_checkpoints

PRUNE_EVERY_S = 60.0  # idle: at most one pass over failed jobs' checkpoints per interval

log = logging.getLogger(__name__)


def embedded_worker_name() -> str:
    return f"embedded@{socket.gethostname()}"


class EmbeddedRunner:
    """Runs the jobs of ``session_factory``'s database in a background thread.

    ``start()`` / ``stop()``; ``queue`` is what the API enqueues into.
    """

    def __init__(self, session_factory: sessionmaker[Session], settings: Settings, *,
                 queue: EmbeddedQueue | None = None, worker_name: str | None = None) -> None:
        self.factory, self.settings = session_factory, settings
        self.queue = queue or EmbeddedQueue()
        self.worker_name = worker_name or embedded_worker_name()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._adopt: list[str] = []  # jobs this runner's name held in a previous process
        self._pruned_at = -PRUNE_EVERY_S  # monotonic time of the last checkpoint pruning

    def start(self) -> None:
        """Take over this runner's unfinished jobs, then start the thread."""
        if self._thread is not None:
            raise RuntimeError("embedded runner already started")
        with session_scope(self.factory) as s:
            running = q.stale_jobs(s, stale_after_s=0.0)  # every running job; we pick ours below
            self._adopt = [j.id for j in sorted(running, key=lambda j: j.created_at) if j.worker == self.worker_name]
        if self._adopt:
            log.info("embedded runner: resuming %d unfinished job(s): %s", len(self._adopt), self._adopt)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="ld3-embedded-runner", daemon=True)
        self._thread.start()

    def stop(self, timeout: float | None = 60.0) -> None:
        """Stop after the current job's next iteration (it stays running, checkpointed, resumable)."""
        self._stop.set()
        self.queue.wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("embedded runner: the current job did not stop within %s s", timeout)
            self._thread = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def next_job(self) -> tuple[str, float] | None:
        """(job id, stale threshold to claim it with): our previous process's jobs first, then
        jobs whose worker went silent, then the oldest queued job."""
        if self._adopt:
            return self._adopt.pop(0), 0.0
        stale_after = self.settings.stale_after_s
        with session_scope(self.factory) as s:
            stale = q.stale_jobs(s, stale_after_s=stale_after)
            if stale:
                return min(stale, key=lambda j: j.created_at).id, stale_after
            queued = q.queued_jobs(s)
            if queued:
                return min(queued, key=lambda j: j.created_at).id, stale_after
        return None

    def _loop(self) -> None:
        from .runner import execute  # torch is imported in the runner thread, not at API import

        settings = self.settings
        while not self._stop.is_set():
            self.queue.wake.clear()
            try:
                nxt = self.next_job()
                if nxt is None:
                    if time.monotonic() - self._pruned_at >= PRUNE_EVERY_S:
                        self._pruned_at = time.monotonic()
                        prune_failed_checkpoints(self.factory, settings.checkpoint_retention_s)
                    self.queue.wake.wait(settings.poll_interval_s)
                    continue
                job_id, stale_after = nxt
                outcome = execute(job_id, session_factory=self.factory, settings=settings,
                                  worker_name=self.worker_name, interrupt=self._stop, stale_after_s=stale_after)
                log.info("embedded runner: job %s %s", job_id, outcome)
            except Exception:  # noqa: BLE001 - one bad job (or a database outage) must not end the runner
                log.exception("embedded runner: a job raised; retrying after %s s", settings.poll_interval_s)
                self._stop.wait(settings.poll_interval_s)
