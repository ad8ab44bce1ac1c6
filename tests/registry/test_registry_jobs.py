"""Job queries on SQLite and on the real PostgreSQL: idempotency, dedupe, the atomic claim, the end states."""

import datetime as dt
import threading

import pytest
from sqlalchemy import update

from registry import jobs as q
from registry import schedules
from registry.db import session_scope, utcnow
from registry.models import upsert_model
from registry.schemas import JobCreate, ScheduleVersionCreate
from registry.tables import JobRow

STALE = 60.0


@pytest.fixture
def db(session_factory, analytic_spec):
    with session_scope(session_factory) as s:
        upsert_model(s, analytic_spec)
    return session_factory


def body(**options) -> JobCreate:
    return JobCreate(model="gmm", solver="euler", nfe=4, options={"loss": "l2", **options})


def create(db, data=None, key=None):
    with session_scope(db) as s:
        job, created = q.create_job(s, data or body(), idempotency_key=key)
        return job.id, created


def claim(db, job_id, worker, stale=STALE):
    with session_scope(db) as s:
        job = q.claim_job(s, job_id, worker=worker, stale_after_s=stale)
        return None if job is None else (job.state, job.worker, job.attempts)


def job(db, job_id) -> JobRow:
    with session_scope(db) as s:
        return q.get_job(s, job_id)


def age_heartbeat(db, job_id, seconds):
    with session_scope(db) as s:
        s.execute(update(JobRow).where(JobRow.id == job_id).values(heartbeat_at=utcnow() - dt.timedelta(seconds=seconds)))


def version(**kw) -> ScheduleVersionCreate:
    data = dict(model_key="gmm", solver="euler", nfe=4, t_steps=[80.0, 5.0, 1.0, 0.1, 0.002],
                t_model=[80.0, 5.0, 1.0, 0.1, 0.002], time_space="edm sigma", sigmas=[80.0, 5.0, 1.0, 0.1, 0.002],
                model_timesteps=[80.0, 5.0, 1.0, 0.1, 0.002], schedule_config={"name": "edm"}, source="ld3",
                config={"ld3": {}}, seed=0, code_version="test", val_loss=0.5, quality={"ld3": 0.1, "edm": 0.2})
    return ScheduleVersionCreate(**{**data, **kw})


# Submission.

def test_create_queues_with_a_submitted_event(db):
    job_id, created = create(db)
    assert created
    with session_scope(db) as s:
        row = q.get_job(s, job_id)
        assert (row.state, row.attempts, row.curve, row.options["loss"]) == ("queued", 0, [], "l2")
        assert row.options["teacher_nfe"] == 20  # defaults are stored, so the fingerprint sees them
        assert [e.kind for e in q.job_events(s, job_id)] == ["submitted"]


def test_same_idempotency_key_same_body_returns_the_job(db):
    first, created = create(db, key="k1")
    again, created_again = create(db, key="k1")
    assert created and not created_again and again == first


def test_same_idempotency_key_other_body_conflicts(db):
    first, _ = create(db, key="k1")
    with pytest.raises(q.IdempotencyConflict) as e:
        create(db, body(seed=1), key="k1")
    assert e.value.job_id == first and "k1" in str(e.value)


def test_idempotency_key_outlives_the_job(db):
    first, _ = create(db, key="k1")
    with session_scope(db) as s:
        q.request_cancel(s, first)
    assert create(db, key="k1") == (first, False)


def test_identical_active_job_is_returned_not_duplicated(db):
    first, _ = create(db)
    assert create(db, body(loss="l2")) == (first, False)  # same body, defaults written out or not
    assert create(db, key="new-key") == (first, False)
    other, created = create(db, body(seed=1))
    assert created and other != first
    claim(db, first, "w1")
    assert create(db) == (first, False)  # running counts too


def test_finished_job_is_not_a_duplicate(db):
    first, _ = create(db)
    with session_scope(db) as s:
        q.request_cancel(s, first)
    second, created = create(db)
    assert created and second != first


# The claim.

def test_claim_queued_job(db):
    job_id, _ = create(db)
    assert claim(db, job_id, "w1") == ("running", "w1", 1)
    row = job(db, job_id)
    assert row.started_at is not None and row.heartbeat_at is not None
    assert claim(db, job_id, "w2") is None  # held, heartbeat fresh
    assert claim(db, "missing", "w2") is None


def test_stale_job_is_taken_over_and_keeps_started_at(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    started = job(db, job_id).started_at
    age_heartbeat(db, job_id, 2 * STALE)
    with session_scope(db) as s:
        assert [j.id for j in q.stale_jobs(s, stale_after_s=STALE)] == [job_id]
    assert claim(db, job_id, "w2") == ("running", "w2", 2)
    assert job(db, job_id).started_at == started
    with session_scope(db) as s:  # the old worker learns it lost the lease
        assert q.heartbeat(s, job_id, worker="w1") == q.Lease(held=False, cancel_requested=False)
        assert not q.update_progress(s, job_id, worker="w1", phase="training", done=1, total=9).held


def test_finished_and_cancelled_jobs_are_not_claimed(db):
    job_id, _ = create(db)
    with session_scope(db) as s:
        q.request_cancel(s, job_id)
    assert claim(db, job_id, "w1") is None
    assert job(db, job_id).state == "cancelled"


def test_abandoned_cancel_request_is_cancelled_on_claim(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    with session_scope(db) as s:
        assert q.request_cancel(s, job_id).cancel_requested
        q.save_checkpoint(s, job_id, iteration=3, data=b"state")
    assert claim(db, job_id, "w2") is None  # fresh heartbeat: w1 will honour it
    age_heartbeat(db, job_id, 2 * STALE)
    assert claim(db, job_id, "w2") is None
    with session_scope(db) as s:
        assert q.get_job(s, job_id).state == "cancelled"
        assert q.load_checkpoint(s, job_id) is None
        assert [e.kind for e in q.job_events(s, job_id)][-1] == "cancelled"


def test_concurrent_claims_exactly_one_wins(db):
    for _ in range(5):
        job_id, _ = create(db, body(seed=_))
        barrier, results = threading.Barrier(4), []

        def worker(name, barrier=barrier, results=results, job_id=job_id):
            barrier.wait()
            results.append(claim(db, job_id, name))

        threads = [threading.Thread(target=worker, args=(f"w{i}",)) for i in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [r for r in results if r is not None]
        assert len(results) == 4 and len(winners) == 1
        assert job(db, job_id).attempts == 1 and winners[0][1] == job(db, job_id).worker


def test_concurrent_submissions_make_one_job(db):
    barrier, results = threading.Barrier(4), []

    def submit(key):
        barrier.wait()
        results.append(create(db, key=key))

    threads = [threading.Thread(target=submit, args=(k,)) for k in ("a", "a", None, None)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({job_id for job_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1


# Progress, cancel, checkpoints, end states.

def test_progress_heartbeat_and_curve(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    with session_scope(db) as s:
        lease = q.update_progress(s, job_id, worker="w1", phase="training", done=5, total=70, loss_current=0.3,
                                  loss_best=0.25, eta_s=12.0, curve_point={"iteration": 5, "train": float("nan"),
                                                                            "val_hard": 0.3, "val_soft": 0.2, "lr": 5e-3})
        assert lease == q.Lease(held=True, cancel_requested=False)
        q.update_progress(s, job_id, worker="w1", phase="training", done=10, total=70,
                          curve_point={"iteration": 10, "train": 0.2, "val_hard": 0.28, "val_soft": 0.2, "lr": 5e-3})
    row = job(db, job_id)
    assert (row.phase, row.progress_done, row.progress_total, row.loss_best) == ("training", 10, 70, 0.25)
    assert row.loss_current == 0.3  # not reported this time: kept
    assert [p["iteration"] for p in row.curve] == [5, 10] and row.curve[0]["train"] is None
    with session_scope(db) as s:
        with pytest.raises(ValueError, match="phase: unknown phase 'warmup'"):
            q.update_progress(s, job_id, worker="w1", phase="warmup", done=0, total=1)


def test_cancel_running_job_is_cooperative(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    with session_scope(db) as s:
        row = q.request_cancel(s, job_id)
        assert (row.state, row.cancel_requested) == ("running", True)
        assert q.heartbeat(s, job_id, worker="w1") == q.Lease(held=True, cancel_requested=True)
        q.finish_cancelled(s, job_id, worker="w1")
    with session_scope(db) as s:
        row = q.get_job(s, job_id)
        assert row.state == "cancelled" and row.finished_at is not None
        assert [e.kind for e in q.job_events(s, job_id)] == ["submitted", "cancel_requested", "cancelled"]
        with pytest.raises(q.JobNotFound):
            q.request_cancel(s, "missing")


def test_checkpoint_overwritten_then_deleted_on_success(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    with session_scope(db) as s:
        q.save_checkpoint(s, job_id, iteration=5, data=b"\x00" * 10)
    with session_scope(db) as s:
        q.save_checkpoint(s, job_id, iteration=10, data=b"\x01\x02")
    with session_scope(db) as s:
        ck = q.load_checkpoint(s, job_id)
        assert (ck.iteration, ck.data) == (10, b"\x01\x02")
    with session_scope(db) as s:
        row = q.finish_success(s, job_id, version=version(), result={"source": "ld3", "message": "ok"}, worker="w1")
        assert row.version == 1 and row.job_id == job_id
    with session_scope(db) as s:
        done = q.get_job(s, job_id)
        assert (done.state, done.schedule_version_id, done.result["source"]) == ("succeeded", row.id, "ld3")
        assert q.load_checkpoint(s, job_id) is None
        assert schedules.get_active(s, "gmm", "euler", 4).id == row.id
        assert q.job_events(s, job_id)[-1].kind == "succeeded"


def test_failure_keeps_the_checkpoint_cancellation_drops_it(db):
    failing, _ = create(db, body(seed=1))
    cancelled, _ = create(db, body(seed=2))
    for job_id in (failing, cancelled):
        claim(db, job_id, "w1")
        with session_scope(db) as s:
            q.save_checkpoint(s, job_id, iteration=7, data=b"state")
    with session_scope(db) as s:
        q.finish_failure(s, failing, reason="RuntimeError: boom", worker="w1")
        q.request_cancel(s, cancelled)
        q.finish_cancelled(s, cancelled, worker="w1")
    with session_scope(db) as s:
        ck = q.load_checkpoint(s, failing)
        assert (ck.iteration, ck.data) == (7, b"state")
        assert q.load_checkpoint(s, cancelled) is None


def test_a_retried_failed_job_is_queued_again_with_its_checkpoint(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    with session_scope(db) as s:
        q.save_checkpoint(s, job_id, iteration=12, data=b"state")
        q.request_cancel(s, job_id)  # a cancel request the failure beat: the retry must not inherit it
        q.finish_failure(s, job_id, reason="CUDA out of memory", worker="w1")
    with session_scope(db) as s:
        row = q.retry_job(s, job_id)
        assert (row.state, row.error, row.finished_at, row.worker, row.attempts) == ("queued", None, None, None, 0)
        assert [j.id for j in q.queued_jobs(s)] == [job_id]
        last = q.job_events(s, job_id)[-1]
        assert last.kind == "requeued" and "iteration 12" in last.message
        assert last.data == {"previous_error": "CUDA out of memory", "checkpoint_iteration": 12}
    assert claim(db, job_id, "w2") == ("running", "w2", 1)
    with session_scope(db) as s:
        assert q.load_checkpoint(s, job_id).iteration == 12
        with pytest.raises(q.JobStateError, match="is running; only a failed job can be retried"):
            q.retry_job(s, job_id)
        with pytest.raises(q.JobNotFound):
            q.retry_job(s, "missing")


def test_a_failed_job_is_not_retried_beside_its_active_twin(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    with session_scope(db) as s:
        q.finish_failure(s, job_id, reason="boom", worker="w1")
    twin, created = create(db)  # the same job submitted again after the failure
    assert created and twin != job_id
    with session_scope(db) as s:
        with pytest.raises(q.JobStateError, match=f"the identical job {twin} is queued"):
            q.retry_job(s, job_id)
    assert job(db, job_id).state == "failed"


def test_second_success_adds_version_two_and_activates_it(db):
    ids = []
    for seed in (0, 1):
        job_id, _ = create(db, body(seed=seed))
        claim(db, job_id, "w1")
        with session_scope(db) as s:
            ids.append(q.finish_success(s, job_id, version=version(seed=seed), result={}).id)
    with session_scope(db) as s:
        assert [v.version for v in schedules.list_versions(s, "gmm", "euler", 4)] == [1, 2]
        assert schedules.get_active(s, "gmm", "euler", 4).id == ids[1]


def test_only_the_holder_finishes(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    with session_scope(db) as s:
        with pytest.raises(q.JobStateError, match="held by w1"):
            q.finish_success(s, job_id, version=version(), result={}, worker="w2")
    with session_scope(db) as s:
        failed = q.finish_failure(s, job_id, reason="CUDA out of memory", worker="w1")
        assert (failed.state, failed.error) == ("failed", "CUDA out of memory")
    with session_scope(db) as s:
        with pytest.raises(q.JobStateError, match="is failed"):
            q.finish_cancelled(s, job_id)


def test_release_puts_job_back_in_queue(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    with session_scope(db) as s:
        assert not q.release_job(s, job_id, worker="w2", reason="shutdown")
        assert q.release_job(s, job_id, worker="w1", reason="worker shutting down")
        assert [j.id for j in q.queued_jobs(s)] == [job_id]
    assert claim(db, job_id, "w2") == ("running", "w2", 2)


def test_list_jobs_filters_and_pages(db):
    a, _ = create(db, body(seed=1))
    b, _ = create(db, body(seed=2))
    claim(db, b, "w1")
    with session_scope(db) as s:
        assert {j.id for j in q.list_jobs(s)} == {a, b}
        assert [j.id for j in q.list_jobs(s, state="running")] == [b]
        assert q.list_jobs(s, model="other") == []
        assert len(q.list_jobs(s, limit=1)) == 1 and len(q.list_jobs(s, limit=1, offset=1)) == 1
        with pytest.raises(ValueError, match="state: unknown state 'done'"):
            q.list_jobs(s, state="done")
        with pytest.raises(ValueError, match="kind: unknown event kind"):
            q.add_event(s, a, "exploded", "")


def _fail_with_checkpoint(db, seed, *, failed_s_ago):
    job_id, _ = create(db, body(seed=seed))
    claim(db, job_id, "w1")
    with session_scope(db) as s:
        q.save_checkpoint(s, job_id, iteration=seed, data=b"state")
        q.finish_failure(s, job_id, reason="boom", worker="w1")
        s.execute(update(JobRow).where(JobRow.id == job_id)
                  .values(finished_at=utcnow() - dt.timedelta(seconds=failed_s_ago)))
    return job_id


def test_prune_checkpoints_deletes_only_old_failures(db):
    old = _fail_with_checkpoint(db, 11, failed_s_ago=3600)
    recent = _fail_with_checkpoint(db, 12, failed_s_ago=10)
    running, _ = create(db, body(seed=13))
    claim(db, running, "w2")
    with session_scope(db) as s:
        q.save_checkpoint(s, running, iteration=5, data=b"live")
        s.execute(update(JobRow).where(JobRow.id == running).values(created_at=utcnow() - dt.timedelta(days=30)))
    with session_scope(db) as s:
        assert q.prune_checkpoints(s, older_than_s=600) == [old]
    with session_scope(db) as s:
        assert q.load_checkpoint(s, old) is None
        assert q.load_checkpoint(s, recent).iteration == 12
        assert q.load_checkpoint(s, running).iteration == 5
        last = q.job_events(s, old)[-1]
        assert last.kind == "checkpoint_pruned" and "iteration 11" in last.message and "starts over" in last.message
        assert last.data == {"checkpoint_iteration": 11}
        assert q.prune_checkpoints(s, older_than_s=600) == []  # nothing left to prune, no second event
    with session_scope(db) as s:
        row = q.retry_job(s, old)
        assert row.state == "queued" and "no checkpoint: it starts over" in q.job_events(s, old)[-1].message


def test_stale_jobs_and_the_claim_agree_on_which_running_jobs_are_abandoned(db):
    fresh, _ = create(db, body(seed=21))
    stale, _ = create(db, body(seed=22))
    never, _ = create(db, body(seed=23))
    queued, _ = create(db, body(seed=24))
    for job_id in (fresh, stale, never):
        claim(db, job_id, "w1")
    age_heartbeat(db, stale, STALE + 5)
    with session_scope(db) as s:
        s.execute(update(JobRow).where(JobRow.id == never).values(heartbeat_at=None))
    with session_scope(db) as s:
        listed = {j.id for j in q.stale_jobs(s, stale_after_s=STALE)}
    assert listed == {stale, never}  # a queued job is not stale: it has no worker to lose
    taken = {job_id for job_id in (fresh, stale, never) if claim(db, job_id, "w2") is not None}
    assert taken == listed
    assert job(db, queued).state == "queued"


def test_count_by_state(db):
    a, _ = create(db, body(seed=31))
    create(db, body(seed=32))
    claim(db, a, "w1")
    with session_scope(db) as s:
        assert q.count_by_state(s) == {"queued": 1, "running": 1}


def test_a_listed_job_carries_the_version_it_published(db):
    done, _ = create(db, body(seed=41))
    waiting, _ = create(db, body(seed=42))
    claim(db, done, "w1")
    with session_scope(db) as s:
        published = q.finish_success(s, done, version=version(source="logsnr"), result={"source": "logsnr"}).id
    with session_scope(db) as s:
        rows = {j.id: j for j in q.list_jobs(s)}
    # Loaded with the list (read here after its session closed): the jobs page shows what each job serves.
    assert rows[done].schedule_version.id == published and rows[done].schedule_version.source == "logsnr"
    assert rows[waiting].schedule_version is None


def test_non_finite_progress_and_results_are_stored_as_null(db):
    job_id, _ = create(db)
    claim(db, job_id, "w1")
    nan = float("nan")
    with session_scope(db) as s:
        q.update_progress(s, job_id, worker="w1", phase="training", done=1, total=9, loss_current=nan, loss_best=0.5,
                          eta_s=float("inf"), curve_point={"iteration": 1, "train": nan, "val_hard": 0.5})
        q.finish_success(s, job_id, version=version(), result={"test": {"ld3": {"mean": nan}}, 3: [float("-inf")]}, worker="w1")
    row = job(db, job_id)
    assert (row.loss_current, row.loss_best, row.eta_s) == (None, 0.5, None)
    assert row.curve == [{"iteration": 1, "train": None, "val_hard": 0.5}]
    assert row.result == {"test": {"ld3": {"mean": None}}, "3": [None]}
