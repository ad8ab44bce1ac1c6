"""worker.eta: the work left to a job's end, and the ETA the reporter writes with its progress."""

from __future__ import annotations

import pytest
from worker_support import NFE, SOLVER, job, submit, tiny_options, worker_settings

from ld3core.train import Progress
from registry import jobs as q
from worker.eta import PHASES, Eta, PhaseCost, job_cost, remaining_work
from worker.options import job_config
from worker.runner import execute


def test_the_job_cost_counts_every_phase_and_the_remaining_training_on_resume():
    cfg = job_config(SOLVER, NFE, tiny_options(n_train=20, phase1_epochs=1, phase2_epochs=2))
    cost = job_cost(cfg)
    iterations = 3 * 20 // cfg.ld3.batch_size
    assert cost["teacher"].steps == 20 + cfg.n_val + cfg.n_test and cost["teacher"].per_step == cfg.teacher.nfe
    assert cost["training"].steps == iterations and cost["evaluation"].steps == len(cfg.heuristics) + 1
    assert cost["teacher"].tail > 0 and cost["evaluation"].tail == 0  # heuristic scoring; no sample grid
    whole = remaining_work(cost, "teacher", 0, cost["teacher"].steps)
    assert whole == pytest.approx(sum(c.steps * c.per_step + c.tail for c in cost.values()))
    # Work left only shrinks along the job and ends at zero (or at the sample grid).
    path = [(p, d, cost[p].steps) for p in PHASES for d in range(cost[p].steps + 1)]
    left = [remaining_work(cost, *step) for step in path]
    assert all(a >= b for a, b in zip(left, left[1:])) and left[-1] == 0
    assert remaining_work(job_cost(cfg, preview_samples=16), "evaluation", 9, 9) == 16 * NFE
    # Resumed at iteration 12: the teacher's estimate leaves out the 12 iterations already done.
    resumed = job_cost(cfg, resume_iteration=12)
    assert whole - remaining_work(resumed, "teacher", 0, cost["teacher"].steps) == pytest.approx(12 * cost["training"].per_step)
    # Twice the starts trained side by side: twice the training work.
    double = job_cost(job_config(SOLVER, NFE, tiny_options(n_train=20, phase1_epochs=1, phase2_epochs=2, starts=1)))
    assert cost["training"].per_step == pytest.approx(2 * double["training"].per_step)


def test_the_eta_covers_the_rest_of_the_job_not_only_the_current_phase(sqlite_factory, sqlite_url, monkeypatch):
    writes = []
    real = q.update_progress

    def spy(s, job_id, **kw):
        writes.append(kw)
        return real(s, job_id, **kw)

    monkeypatch.setattr(q, "update_progress", spy)
    job_id = submit(sqlite_factory, n_train=40, eval_batch_size=8)
    assert execute(job_id, session_factory=sqlite_factory, settings=worker_settings(sqlite_url),
                   worker_name="w1") == "succeeded"

    def last(phase):
        return [w for w in writes if w["phase"] == phase][-1]

    # The last report of the teacher and of training: that phase is done, the job is not.
    for phase in ("teacher", "training"):
        end = last(phase)
        assert end["done"] == end["total"] and end["eta_s"] is not None and end["eta_s"] > 0, phase
    end = last("evaluation")
    assert end["done"] == end["total"] and end["eta_s"] == 0  # no sample grid for 2-D samples: nothing left
    assert job(sqlite_factory, job_id).eta_s is None  # a finished job has no ETA


def test_the_eta_is_the_work_left_at_the_speed_measured_in_the_phase():
    cost = {"teacher": PhaseCost(10, 4), "training": PhaseCost(100, 5, tail=50), "evaluation": PhaseCost(1, 2)}
    eta = Eta(cost)
    assert eta(Progress("teacher", 0, 4), now=0.0) is None  # no speed measured yet
    assert eta(Progress("teacher", 2, 4), now=4.0) == pytest.approx(0.2 * (2 * 10 + 5 * 100 + 50 + 2))  # 20 units in 4 s
    # A new phase starts with the previous phase's speed, then measures its own.
    assert eta(Progress("training", 0, 5), now=10.0) == pytest.approx(0.2 * (5 * 100 + 50 + 2))
    assert eta(Progress("training", 1, 5), now=11.0) == pytest.approx(0.01 * (4 * 100 + 50 + 2))
