"""A small synchronous client for the schedule service.

    from client import Client
    with Client("http://127.0.0.1:8000", api_key) as c:
        job = c.submit("ddpm-digits", "unipc", 5)
        job = c.wait(job["id"], on_update=print)
        sched = c.schedule("ddpm-digits", "unipc", 5, format="diffusers")

Every non-2xx answer raises ``ApiError`` carrying the server's status and ``detail``.
"""

from __future__ import annotations

import time
from typing import Any, Callable

import httpx

TERMINAL_STATES = frozenset({"succeeded", "failed", "cancelled"})


class ApiError(Exception):
    """A non-2xx answer: ``status`` and the server's ``detail`` (a string or a list of field errors)."""

    def __init__(self, status: int, detail: Any) -> None:
        self.status, self.detail = status, detail
        super().__init__(f"HTTP {status}: {format_detail(detail)}")


def format_detail(detail: Any) -> str:
    """A server ``detail`` as one line: field errors joined by '; '."""
    if isinstance(detail, list):
        return "; ".join(str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail)
    return str(detail)


class Client:
    """Synchronous HTTP client. ``http`` lets a caller pass its own ``httpx.Client`` (tests pass a TestClient)."""

    def __init__(self, base_url: str, api_key: str | None = None, *, timeout: float = 30.0,
                 http: httpx.Client | None = None) -> None:
        headers = {"X-API-Key": api_key} if api_key else {}
        if http is None:
            http = httpx.Client(base_url=base_url.rstrip("/"), timeout=timeout)
        http.headers.update(headers)
        self.http = http

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, url: str, **kw: Any) -> Any:
        r = self.http.request(method, url, **kw)
        if r.status_code >= 400:
            try:
                detail = r.json().get("detail", r.text)
            except ValueError:
                detail = r.text
            raise ApiError(r.status_code, detail)
        return r.json() if r.content else None

    # Jobs.
    def submit(self, model: str, solver: str, nfe: int, *, options: dict[str, Any] | None = None,
               idempotency_key: str | None = None) -> dict[str, Any]:
        """POST /jobs: the new job, or the identical queued/running one the server returned instead."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        body = {"model": model, "solver": solver, "nfe": nfe, "options": options or {}}
        return self._call("POST", "/jobs", json=body, headers=headers)

    def get_job(self, job_id: str) -> dict[str, Any]:
        return self._call("GET", f"/jobs/{job_id}")

    def list_jobs(self, *, state: str | None = None, model: str | None = None,
                  limit: int = 50, offset: int = 0) -> dict[str, Any]:
        params = {k: v for k, v in {"state": state, "model": model, "limit": limit, "offset": offset}.items() if v is not None}
        return self._call("GET", "/jobs", params=params)

    def cancel(self, job_id: str) -> dict[str, Any]:
        return self._call("POST", f"/jobs/{job_id}/cancel")

    def wait(self, job_id: str, *, on_update: Callable[[dict[str, Any]], None] | None = None,
             poll_s: float = 0.5, max_poll_s: float = 5.0, timeout_s: float | None = None) -> dict[str, Any]:
        """Poll until the job is finished; ``on_update(job)`` after every poll.

        The interval grows by 1.5x while nothing changes (up to ``max_poll_s``) and falls back to
        ``poll_s`` when progress moves. Connection errors are retried on the same schedule.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay, last = poll_s, None
        while True:
            try:
                job = self.get_job(job_id)
            except httpx.TransportError:
                job = None
            if job is not None:
                if on_update is not None:
                    on_update(job)
                if job.get("state") in TERMINAL_STATES:
                    return job
                seen = (job.get("state"), job.get("phase"), job.get("progress_done"))
                delay = poll_s if seen != last else min(delay * 1.5, max_poll_s)
                last = seen
            if deadline is not None and time.monotonic() + delay > deadline:
                raise TimeoutError(f"job {job_id} not finished after {timeout_s} s")
            time.sleep(delay)

    # Schedules.
    def schedule(self, model: str, solver: str, nfe: int, *, format: str = "raw", version: int | None = None,
                 guidance: float | None = None) -> dict[str, Any]:
        """GET /schedules/{model}/{solver}/{nfe}: the active (or given) version, raw or exported."""
        params: dict[str, Any] = {"format": format}
        if version is not None:
            params["version"] = version
        if guidance is not None:
            params["guidance"] = guidance
        return self._call("GET", f"/schedules/{model}/{solver}/{nfe}", params=params)

    def schedule_versions(self, model: str, solver: str, nfe: int, *, guidance: float | None = None) -> list[dict[str, Any]]:
        params = {} if guidance is None else {"guidance": guidance}
        return self._call("GET", f"/schedules/{model}/{solver}/{nfe}/versions", params=params)

    def promote(self, model: str, solver: str, nfe: int, version: int, *, guidance: float | None = None) -> dict[str, Any]:
        params = {} if guidance is None else {"guidance": guidance}
        return self._call("POST", f"/schedules/{model}/{solver}/{nfe}/versions/{version}/promote", params=params)

    # Models.
    def models(self) -> list[dict[str, Any]]:
        return self._call("GET", "/models")

    def add_model(self, spec: dict[str, Any]) -> dict[str, Any]:
        return self._call("POST", "/models", json=spec)
