"""worker.lease: the heartbeat thread and the stop decision it caches."""

from __future__ import annotations

from worker_support import job, submit, wait_for

from registry import jobs as q
from registry.db import session_scope
from worker.lease import Lease


def test_the_lease_heartbeats_while_the_job_itself_is_busy_elsewhere(factory, db_url):
    job_id = submit(factory)
    with session_scope(factory) as s:
        first = q.claim_job(s, job_id, worker="w1", stale_after_s=60).heartbeat_at
    with Lease(factory, job_id, "w1", every_s=0.05):
        wait_for(lambda: job(factory, job_id).heartbeat_at > first, 10, "a heartbeat from the lease thread")


def test_the_lease_reports_a_cancel_request_at_its_next_check(factory, db_url):
    job_id = submit(factory)
    with session_scope(factory) as s:
        q.claim_job(s, job_id, worker="w1", stale_after_s=60)
    with Lease(factory, job_id, "w1", every_s=0.05) as lease:
        assert lease.stop_reason() is None
        with session_scope(factory) as s:
            q.request_cancel(s, job_id)
        assert wait_for(lease.stop_reason, 10, "the cancel request to reach the lease") == "cancelled"
    with Lease(factory, job_id, "w2", every_s=0.05) as lease:  # w2 never held it
        assert wait_for(lease.stop_reason, 10, "the lost lease") == "lost"
