"""The Celery app of the GPU workers, configured from ``registry.settings``.

    LD3_BROKER_URL=redis://127.0.0.1:6379/0 LD3_DATABASE_URL=postgresql+psycopg://... \\
        celery -A worker.celery_app worker -Q gpu

One job per GPU: concurrency 1 in the solo pool (the job runs in the worker process; no fork
after CUDA). A message is acknowledged only when the task returns (``acks_late``), one
message is reserved at a time (prefetch 1), and a message whose worker died is redelivered
after the visibility timeout, which must exceed the longest job. Job state lives in the
database, not in a result backend; a task that runs twice is harmless (the claim is atomic).

No torch here: the runner is imported inside the task.
"""

from __future__ import annotations

from celery import Celery

from registry.settings import Settings, get_settings

from .queue import GPU_QUEUE, TASK_NAME


def make_celery(settings: Settings) -> Celery:
    """A Celery app for ``settings.broker_url`` (None is allowed here, refused when a worker starts)."""
    app = Celery("ld3", broker=settings.broker_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_concurrency=1,
        worker_pool="solo",
        task_default_queue=GPU_QUEUE,
        task_routes={TASK_NAME: {"queue": GPU_QUEUE}},
        task_ignore_result=True,
        task_serializer="json",
        accept_content=["json"],
        broker_transport_options={"visibility_timeout": settings.visibility_timeout_s},
        broker_connection_retry_on_startup=True,
        worker_cancel_long_running_tasks_on_connection_loss=False,
    )
    return app


app = make_celery(get_settings())
