"""worker.reporter: progress throttled but never at a phase change, a validation or a phase's end;
checkpoints at epoch ends; a stop seen through the lease (end-to-end jobs: tests/worker/test_runner.py)."""

from __future__ import annotations

import math

import pytest
from worker_support import NFE, SOLVER, checkpoint_iteration, events, job, submit, tiny_options, worker_settings

from ld3core.train import Progress
from registry import jobs as q
from registry.db import session_scope
from worker.eta import Eta, job_cost
from worker.lease import Lease
from worker.options import job_config
from worker.reporter import JobInterrupted, Reporter


@pytest.fixture
def reporter(sqlite_factory, sqlite_url):
    """A claimed job's reporter that writes progress only when it must (progress_every_s is an hour)."""
    job_id = submit(sqlite_factory)
    with session_scope(sqlite_factory) as s:
        q.claim_job(s, job_id, worker="w1", stale_after_s=60)
    lease = Lease(sqlite_factory, job_id, "w1", every_s=60)  # never started: no heartbeats of its own
    settings = worker_settings(sqlite_url, progress_every_s=3600.0, checkpoint_every_s=3600.0)
    cost = job_cost(job_config(SOLVER, NFE, tiny_options()))
    return Reporter(sqlite_factory, job_id, "w1", lease, settings, iterations_per_epoch=10, eta=Eta(cost))


def test_progress_is_written_at_phase_changes_validations_and_phase_ends(reporter, sqlite_factory):
    rep, job_id = reporter, reporter.job_id
    rep.on_progress(Progress("teacher", 0, 50))
    rep.on_progress(Progress("teacher", 10, 50))  # within progress_every_s of the last write: not written
    assert job(sqlite_factory, job_id).progress_done == 0
    rep.on_progress(Progress("teacher", 50, 50))
    row = job(sqlite_factory, job_id)
    assert (row.phase, row.progress_done, row.progress_total) == ("teacher", 50, 50) and row.eta_s > 0
    rep.on_progress(Progress("training", 0, 20))
    rep.on_progress(Progress("training", 5, 20, loss=0.3, val_hard=0.25, val=0.25, best=0.25))
    rep.on_progress(Progress("training", 6, 20, loss=0.2, val_hard=math.nan, val=math.nan, best=0.25))
    row = job(sqlite_factory, job_id)
    assert row.progress_done == 6 and (row.loss_current, row.loss_best) == (0.25, 0.25)  # a NaN loss is not written
    assert [(p["iteration"], p["val_hard"]) for p in row.curve] == [(5, 0.25), (6, None)]
    assert [d["phase"] for k, _, d in events(sqlite_factory, job_id) if k == "phase"] == ["teacher", "training"]


def test_checkpoints_at_epoch_ends_and_a_stop_through_the_lease(reporter, sqlite_factory):
    rep, job_id = reporter, reporter.job_id
    state = {"iteration": 3, "history": [], "xi": [0.0]}
    rep.on_checkpoint(state)  # the first is saved: none was before
    rep.on_checkpoint({**state, "iteration": 4})  # within checkpoint_every_s, not an epoch end
    assert checkpoint_iteration(sqlite_factory, job_id) == 3
    rep.on_checkpoint({**state, "iteration": 10})
    assert checkpoint_iteration(sqlite_factory, job_id) == 10
    assert [d["iteration"] for k, _, d in events(sqlite_factory, job_id) if k == "checkpoint"] == [10]

    assert not rep.should_stop()
    rep.lease.update(q.Lease(held=True, cancel_requested=True))
    assert rep.should_stop()
    with pytest.raises(JobInterrupted, match="cancelled"):  # the teacher and the evaluation have no stop hook
        rep.on_progress(Progress("evaluation", 1, 5))
    rep.lease.update(q.Lease(held=False, cancel_requested=False))
    rep.on_checkpoint({**state, "iteration": 20})  # another worker holds the job: its checkpoint stays
    assert checkpoint_iteration(sqlite_factory, job_id) == 10
