"""A running job's callbacks to ``ld3core.optimize.run_job``: progress, checkpoints, stop.

- progress at most every ``settings.progress_every_s`` and at every phase change and
  validation (with a curve point), with the ETA of the whole job (``worker.eta``);
- the LD3 state (``worker.checkpoint`` bytes) at most every ``settings.checkpoint_every_s``,
  at every epoch end and when stopping; a job that is picked up again resumes from it bit for
  bit (the teacher pairs are recomputed from their seeds);
- stop when the lease says so (``worker.lease``): cancelled, lost, or the worker shutting down.

A database error that may pass is logged and the job goes on: the next write will do.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from ld3core.train import Progress
from registry import jobs as q
from registry.db import DATABASE_UNREACHABLE, json_safe, session_scope
from registry.settings import Settings

from .checkpoint import state_to_bytes
from .eta import Eta
from .lease import Lease

log = logging.getLogger(__name__)


class JobInterrupted(Exception):
    """Raised from ``on_progress`` to stop the teacher or evaluation phase, which have no
    ``should_stop`` hook (cancelled, lease lost, shutdown)."""


class Reporter:
    """``on_progress``, ``on_checkpoint`` and ``should_stop`` of one job, throttled."""

    def __init__(self, factory: sessionmaker[Session], job_id: str, worker: str, lease: Lease,
                 settings: Settings, iterations_per_epoch: int, eta: Eta) -> None:
        self.factory, self.job_id, self.worker, self.lease = factory, job_id, worker, lease
        self.progress_every, self.checkpoint_every = settings.progress_every_s, settings.checkpoint_every_s
        self.iterations_per_epoch, self.eta = iterations_per_epoch, eta
        self.phase: str | None = None
        self.last_write = self.last_save = -math.inf
        self.last_row: dict[str, Any] | None = None  # the training history row of the last validation
        self.saved_iteration: int | None = None

    def should_stop(self) -> bool:
        return self.lease.stop_reason() is not None

    def on_progress(self, p: Progress) -> None:
        now = time.monotonic()
        if p.phase != "training" and self.should_stop():
            raise JobInterrupted(self.lease.stop_reason())  # teacher/evaluation have no stop hook
        changed = p.phase != self.phase
        self.phase = p.phase
        point = self._curve_point(p) if p.val_hard is not None or p.val_soft is not None else None
        if not (changed or point or p.iteration >= p.total or now - self.last_write >= self.progress_every):
            return
        self.last_write = now
        eta = self.eta(p, now)
        try:
            with session_scope(self.factory) as s:
                if changed:
                    q.add_event(s, self.job_id, "phase", f"{p.phase} started", {"phase": p.phase, "total": p.total})
                self.lease.update(q.update_progress(
                    s, self.job_id, worker=self.worker, phase=p.phase, done=p.iteration, total=p.total,
                    loss_current=json_safe(p.val), loss_best=json_safe(p.best), eta_s=eta, curve_point=point,
                ))
        except DATABASE_UNREACHABLE as e:  # the job goes on; the lease thread notices a lasting outage
            log.warning("job %s: progress not written: %s", self.job_id, e)

    def _curve_point(self, p: Progress) -> dict[str, Any]:
        lr = None
        if self.last_row is not None:  # on_checkpoint ran just before this report
            best = self.last_row["best"]
            lr = self.last_row["lr_xi"][min(range(len(best)), key=best.__getitem__)]
        return json_safe({"iteration": p.iteration, "train": p.loss, "val_hard": p.val_hard, "val_soft": p.val_soft,
                          "lr": lr})

    def on_checkpoint(self, state: dict[str, Any]) -> None:
        it = state["iteration"]
        self.last_row = state["history"][-1] if state["history"] else None
        now = time.monotonic()
        epoch_end = it % self.iterations_per_epoch == 0
        if not (epoch_end or self.should_stop() or now - self.last_save >= self.checkpoint_every):
            return
        if not self.lease.held or it == self.saved_iteration:
            return  # another worker holds the job now: its checkpoint is not ours to overwrite
        data = state_to_bytes(state)
        try:
            with session_scope(self.factory) as s:
                q.save_checkpoint(s, self.job_id, iteration=it, data=data)
                if epoch_end and it > 0:
                    epoch = it // self.iterations_per_epoch
                    q.add_event(s, self.job_id, "checkpoint", f"checkpoint at iteration {it} (epoch {epoch})",
                                {"iteration": it, "bytes": len(data)})
        except DATABASE_UNREACHABLE as e:  # the next checkpoint will do; a resume starts from the last one stored
            log.warning("job %s: checkpoint at iteration %d not saved: %s", self.job_id, it, e)
            return
        self.last_save, self.saved_iteration = now, it
