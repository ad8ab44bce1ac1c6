"""worker.embedded: the in-process runner of ``ld3 serve`` on its SQLite database.

Real jobs on the analytic 2-D mixture; each runner is stopped at the end of its test.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from worker_support import checkpoint_iteration, events, job, submit, wait_for, worker_settings

from registry import jobs as q
from registry.db import session_scope
from worker.embedded import EmbeddedRunner, embedded_worker_name


@pytest.fixture
def runners() -> Iterator[list[EmbeddedRunner]]:
    made: list[EmbeddedRunner] = []
    yield made
    for r in made:
        r.stop(timeout=30)


def _start(runners, factory, url, **settings) -> EmbeddedRunner:
    r = EmbeddedRunner(factory, worker_settings(url, **settings))
    runners.append(r)
    r.start()
    return r


def _state(factory, job_id):
    return job(factory, job_id).state


def test_queued_jobs_run_one_at_a_time_oldest_first(sqlite_factory, sqlite_url, runners):
    first, second = submit(sqlite_factory, seed=1), submit(sqlite_factory, seed=2)
    runner = _start(runners, sqlite_factory, sqlite_url)
    for job_id in (first, second):
        wait_for(lambda job_id=job_id: _state(sqlite_factory, job_id) == "succeeded", 60, f"job {job_id} to succeed")
    a, b = job(sqlite_factory, first), job(sqlite_factory, second)
    assert a.worker == b.worker == runner.worker_name
    assert a.finished_at <= b.started_at  # one at a time, the older first


def test_an_enqueued_job_wakes_the_runner_before_its_next_poll(sqlite_factory, sqlite_url, runners):
    runner = _start(runners, sqlite_factory, sqlite_url, poll_interval_s=3600.0)
    wait_for(lambda: runner.running, 10, "the runner thread")
    job_id = submit(sqlite_factory)
    runner.queue.enqueue(job_id)
    wait_for(lambda: _state(sqlite_factory, job_id) == "succeeded", 60, "the enqueued job to succeed")


def test_stop_leaves_the_job_resumable_and_the_next_start_resumes_it(sqlite_factory, sqlite_url, runners):
    job_id = submit(sqlite_factory, n_train=100, phase1_epochs=1, phase2_epochs=2)  # 150 iterations
    runner = _start(runners, sqlite_factory, sqlite_url)
    wait_for(lambda: (checkpoint_iteration(sqlite_factory, job_id) or 0) > 0, 60, "a mid-training checkpoint")
    runner.stop(timeout=30)
    assert not runner.running
    row = job(sqlite_factory, job_id)
    assert row.state == "queued" and not row.cancel_requested  # not cancelled: back in the queue
    at = checkpoint_iteration(sqlite_factory, job_id)
    assert 0 < at < 150

    _start(runners, sqlite_factory, sqlite_url)
    wait_for(lambda: _state(sqlite_factory, job_id) == "succeeded", 120, "the resumed job to succeed")
    assert job(sqlite_factory, job_id).attempts == 2
    assert [d["iteration"] for k, _, d in events(sqlite_factory, job_id) if k == "resumed"] == [at]


def test_start_takes_over_the_jobs_a_crashed_previous_process_held(sqlite_factory, sqlite_url, runners):
    ours, theirs = submit(sqlite_factory, seed=1), submit(sqlite_factory, seed=2)
    with session_scope(sqlite_factory) as s:  # as if a previous process died holding both (fresh heartbeats)
        assert q.claim_job(s, ours, worker=embedded_worker_name(), stale_after_s=60)
        assert q.claim_job(s, theirs, worker="celery@elsewhere:1", stale_after_s=60)
    first = _start(runners, sqlite_factory, sqlite_url, stale_after_s=60.0)
    wait_for(lambda: _state(sqlite_factory, ours) == "succeeded", 60, "our own unfinished job to be resumed")
    assert job(sqlite_factory, ours).attempts == 2
    row = job(sqlite_factory, theirs)
    assert row.state == "running" and row.worker == "celery@elsewhere:1"  # its heartbeat is not stale yet
    first.stop()
    # Another worker's job is taken over once its heartbeat is stale (after 1 s here).
    _start(runners, sqlite_factory, sqlite_url, stale_after_s=1.0)
    wait_for(lambda: _state(sqlite_factory, theirs) == "succeeded", 60, "the stale job to be taken over")
    row = job(sqlite_factory, theirs)
    assert row.attempts == 2 and row.worker == embedded_worker_name()


def test_an_idle_runner_prunes_old_failed_checkpoints(sqlite_factory, sqlite_url, runners):
    from worker_support import failed_with_checkpoint

    old = failed_with_checkpoint(sqlite_factory, failed_s_ago=3600, seed=31)
    recent = failed_with_checkpoint(sqlite_factory, failed_s_ago=1, seed=32)
    _start(runners, sqlite_factory, sqlite_url, checkpoint_retention_s=600)
    wait_for(lambda: checkpoint_iteration(sqlite_factory, old) is None, 10, "the old checkpoint to be pruned")
    assert checkpoint_iteration(sqlite_factory, recent) == 3
    assert events(sqlite_factory, old)[-1][0] == "checkpoint_pruned"
