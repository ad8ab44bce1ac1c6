"""worker.queue: the Celery queue against the real Redis (db 15, emptied), and the embedded one."""

from __future__ import annotations

from worker_support import ROOT, TEST_REDIS_URL

from registry.settings import Settings
from worker.celery_app import make_celery
from worker.queue import GPU_QUEUE, TASK_NAME, CeleryQueue, EmbeddedQueue


def test_enqueue_sends_one_message_to_the_gpu_queue(celery_queue, broker):
    assert celery_queue.pending_job_ids() == set()
    celery_queue.enqueue("job-a")
    celery_queue.enqueue("job-b")
    assert broker.llen(GPU_QUEUE) == 2
    assert celery_queue.pending_job_ids() == {"job-a", "job-b"}


def test_pending_ids_ignore_other_tasks_on_the_queue(celery_queue):
    celery_queue.app.send_task("something.else", args=["job-x"], queue=GPU_QUEUE)
    celery_queue.enqueue("job-a")
    assert celery_queue.pending_job_ids() == {"job-a"}


def test_pending_ids_are_unknown_when_the_broker_is_unreachable():
    dead = CeleryQueue(make_celery(Settings(broker_url="redis://127.0.0.1:1/0")))
    assert dead.pending_job_ids() is None


def test_the_celery_app_holds_the_contracts_delivery_settings():
    app = make_celery(Settings(broker_url=TEST_REDIS_URL, visibility_timeout_s=7200))
    c = app.conf
    assert c.task_acks_late and c.task_reject_on_worker_lost and c.worker_prefetch_multiplier == 1
    assert c.worker_concurrency == 1 and c.task_default_queue == GPU_QUEUE
    assert c.task_routes[TASK_NAME] == {"queue": GPU_QUEUE}
    assert c.broker_transport_options["visibility_timeout"] == 7200


def test_the_embedded_queue_wakes_its_runner():
    q = EmbeddedQueue()
    assert not q.wake.is_set()
    q.enqueue("job-a")
    assert q.wake.is_set()


def test_the_queue_app_tasks_reaper_and_embedded_runner_import_without_torch():
    import subprocess
    import sys

    code = ("import sys, worker.queue, worker.celery_app, worker.tasks, worker.reaper, worker.embedded; "
            "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
