"""How a job id reaches a runner: a Celery message on the "gpu" queue, or a wake-up of the
in-process runner. The API holds a ``JobQueue`` and calls ``enqueue`` after the job row is
committed. Enqueueing twice is harmless: the runner claims a job atomically, so a duplicate
message finds the job taken (or finished) and does nothing.

No torch here, and no import of ``worker.tasks``: the API process stays small.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
from typing import Any, Protocol

TASK_NAME = "ld3.run_job"
GPU_QUEUE = "gpu"

log = logging.getLogger(__name__)


class JobQueue(Protocol):
    def enqueue(self, job_id: str) -> None:
        """Hand ``job_id`` (already committed as a queued job) to a runner."""


class CeleryQueue:
    """Sends the task by name to the "gpu" queue of ``app`` (a Celery app configured for the broker)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    def enqueue(self, job_id: str) -> None:
        self.app.send_task(TASK_NAME, args=[job_id], queue=GPU_QUEUE)

    def pending_job_ids(self) -> set[str] | None:
        """Job ids of the messages waiting in the broker's "gpu" queue (not yet delivered).

        Only the Redis transport can be read this way; ``None`` means "cannot tell" (another
        broker, or the broker is unreachable), and the caller then treats every job as having
        no message: a duplicate costs one no-op task.
        """
        try:
            with self.app.connection_for_read() as conn:
                conn.ensure_connection(max_retries=1, interval_start=0, interval_step=0.5)
                channel = conn.default_channel
                if not hasattr(channel, "_q_for_pri"):
                    return None
                keys = [channel._q_for_pri(GPU_QUEUE, p) for p in channel.priority_steps]
                raw = [m for k in dict.fromkeys(keys) for m in channel.client.lrange(k, 0, -1)]
        except Exception as e:  # noqa: BLE001 - any broker error means "cannot tell"
            log.warning("cannot list the broker's %r queue: %s", GPU_QUEUE, e)
            return None
        return {job_id for m in raw if (job_id := _job_id_of(m)) is not None}


def _job_id_of(raw: bytes | str) -> str | None:
    """The job id of one Redis-transport message of ``TASK_NAME`` (task protocol 2), else None."""
    try:
        msg = json.loads(raw)
        if msg.get("headers", {}).get("task") != TASK_NAME:
            return None
        body = msg["body"]
        if msg.get("properties", {}).get("body_encoding") == "base64":
            body = base64.b64decode(body)
        args = json.loads(body)[0]
        return str(args[0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None


class EmbeddedQueue:
    """Wakes the in-process runner (``worker.embedded.EmbeddedRunner``), which reads the queued
    jobs from the database: the job row is the message."""

    def __init__(self) -> None:
        self.wake = threading.Event()

    def enqueue(self, job_id: str) -> None:
        self.wake.set()
