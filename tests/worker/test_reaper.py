"""worker.reaper: orphaned jobs are re-enqueued once, on SQLite and PostgreSQL, with the real Redis."""

from __future__ import annotations

import time

from worker_support import events, submit, wait_for

from registry import jobs as q
from registry.db import session_scope
from worker.reaper import Reaper, requeue_orphans


def _dead_worker_job(factory, **options) -> str:
    job_id = submit(factory, **options)
    with session_scope(factory) as s:
        assert q.claim_job(s, job_id, worker="dead", stale_after_s=60)
    return job_id


def test_stale_and_message_less_jobs_are_enqueued_once(factory, celery_queue, broker):
    stale, queued = _dead_worker_job(factory, seed=1), submit(factory, seed=2)
    time.sleep(0.1)
    pending = celery_queue.pending_job_ids()
    done = requeue_orphans(factory, celery_queue, stale_after_s=0.05, pending=pending, queued_grace_s=0.0)
    assert sorted(done) == sorted([stale, queued])
    assert celery_queue.pending_job_ids() == {stale, queued}
    assert [k for k, _, _ in events(factory, stale)][-1] == "requeued"
    assert [k for k, _, _ in events(factory, queued)][-1] == "requeued"
    # A second pass finds both messages waiting: nothing more is sent.
    pending = celery_queue.pending_job_ids()
    assert requeue_orphans(factory, celery_queue, stale_after_s=0.05, pending=pending, queued_grace_s=0.0) == []
    assert broker.llen("gpu") == 2


def test_fresh_jobs_are_left_alone(factory, celery_queue):
    _live, _young = _dead_worker_job(factory, seed=1), submit(factory, seed=2)
    pending = celery_queue.pending_job_ids()
    assert requeue_orphans(factory, celery_queue, stale_after_s=60, pending=pending, queued_grace_s=60) == []
    assert celery_queue.pending_job_ids() == set()


def test_without_a_readable_broker_only_stale_jobs_are_enqueued(factory, celery_queue):
    stale, _queued = _dead_worker_job(factory, seed=1), submit(factory, seed=2)
    time.sleep(0.1)
    assert requeue_orphans(factory, celery_queue, stale_after_s=0.05, pending=None, queued_grace_s=0.0) == [stale]


def test_the_reaper_thread_keeps_watching(factory, celery_queue):
    reaper = Reaper(factory, celery_queue, stale_after_s=0.2, every_s=0.05, pending=celery_queue.pending_job_ids)
    reaper.start()
    try:
        job_id = _dead_worker_job(factory)
        wait_for(lambda: job_id in celery_queue.pending_job_ids(), 10, "the stale job to be re-enqueued")
    finally:
        reaper.stop()


def test_the_reaper_does_not_resend_a_job_whose_message_was_just_taken(factory, celery_queue, broker):
    job_id = _dead_worker_job(factory)
    reaper = Reaper(factory, celery_queue, stale_after_s=0.05, every_s=60, pending=celery_queue.pending_job_ids,
                    resend_after_s=0.5)
    time.sleep(0.1)
    assert reaper.run_once() == [job_id]
    broker.delete("gpu")  # a worker took the message and has not claimed the job yet
    assert reaper.run_once() == []
    time.sleep(0.6)  # longer than resend_after_s: the message is presumed lost
    assert reaper.run_once() == [job_id]


def test_the_reaper_prunes_checkpoints_of_old_failures_only_when_asked(factory, celery_queue):
    from worker_support import failed_with_checkpoint

    old = failed_with_checkpoint(factory, failed_s_ago=3600, seed=21)
    recent = failed_with_checkpoint(factory, failed_s_ago=5, seed=22)
    keep_all = Reaper(factory, celery_queue, stale_after_s=60, every_s=60, pending=celery_queue.pending_job_ids)
    keep_all.run_once()  # checkpoint_retention_s defaults to 0: nothing is pruned
    with session_scope(factory) as s:
        assert q.load_checkpoint(s, old) is not None
    reaper = Reaper(factory, celery_queue, stale_after_s=60, every_s=60, pending=celery_queue.pending_job_ids,
                    checkpoint_retention_s=600)
    assert reaper.run_once() == []  # nothing to re-enqueue: failed jobs stay failed
    with session_scope(factory) as s:
        assert q.load_checkpoint(s, old) is None and q.load_checkpoint(s, recent) is not None
        assert q.get_job(s, old).state == "failed"
    assert events(factory, old)[-1][0] == "checkpoint_pruned"
