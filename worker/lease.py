"""A running job's lease: the heartbeat thread, and whether the job should stop.

The heartbeat runs on a daemon thread, so that a job blocked in a long call (the teacher, a
slow device) still shows it is alive; the registry's answer to each heartbeat also says
whether cancellation was requested or the lease was lost (another worker took over a job it
thought dead).
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy.orm import Session, sessionmaker

from registry import jobs as q
from registry.db import session_scope

log = logging.getLogger(__name__)

LEASE_CHECK_S = 1.0  # should_stop sees a cancellation or a lost lease within this


class Lease:
    """Keeps the job's heartbeat from a daemon thread and caches what the registry answers.

    ``stop_reason()`` costs no database call: the thread refreshes the answer every
    ``every_s`` seconds, and progress writes refresh it too (``update``).
    """

    def __init__(self, factory: sessionmaker[Session], job_id: str, worker: str, every_s: float,
                 interrupt: threading.Event | None = None) -> None:
        self.factory, self.job_id, self.worker, self.every_s = factory, job_id, worker, every_s
        self.interrupt = interrupt or threading.Event()
        self.held, self.cancel_requested = True, False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"heartbeat-{job_id[:8]}", daemon=True)

    def __enter__(self) -> "Lease":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=30)

    def update(self, lease: q.Lease) -> None:
        self.held, self.cancel_requested = bool(lease.held), bool(lease.cancel_requested)

    def _loop(self) -> None:
        while not self._done.wait(self.every_s):
            try:
                with session_scope(self.factory) as s:
                    self.update(q.heartbeat(s, self.job_id, worker=self.worker))
            except Exception as e:  # noqa: BLE001 - a heartbeat miss must not end the job
                log.warning("job %s: heartbeat failed: %s", self.job_id, e)

    def stop_reason(self) -> str | None:
        """"lost", "cancelled", "interrupted" (e.g. shutdown), or None: go on."""
        if not self.held:
            return "lost"
        if self.cancel_requested:
            return "cancelled"
        if self.interrupt.is_set():
            return "interrupted"
        return None
