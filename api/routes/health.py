"""``/healthz`` (the process answers) and ``/readyz`` (its database, the schedule lookup's own
connections and the broker, if any, answer)."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from registry.db import ping

from ..lookup import VersionIdLookup

router = APIRouter(tags=["health"])

LOOKUP_WAIT_S = 2.0  # a lookup takes milliseconds: no connection free for this long is a drained pool


class Ready(BaseModel):
    """``/readyz`` when every dependency answers: each one's state."""

    status: str
    checks: dict[str, str]


class NotReady(BaseModel):
    """``/readyz``'s 503: ``detail`` names what is down, ``checks`` each dependency's state."""

    detail: str
    checks: dict[str, str]


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """Liveness: the process serves requests."""
    return {"status": "ok"}


def _reason(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}".splitlines()[0]


def _ping_database(factory: sessionmaker[Session]) -> str | None:
    try:
        with factory() as s:
            ping(s)
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"; say which
        return _reason(e)


async def _ping_lookup(lookup: VersionIdLookup) -> str | None:
    """None if a schedule lookup connection answers within ``LOOKUP_WAIT_S``, else what is wrong."""
    try:
        await asyncio.wait_for(lookup.ping(), LOOKUP_WAIT_S)
        return None
    except asyncio.TimeoutError:
        return f"no connection free within {LOOKUP_WAIT_S:g} s ({lookup.describe()}): pool exhausted"
    except Exception as e:  # noqa: BLE001
        return _reason(e)


def _ping_broker(url: str) -> str | None:
    try:
        if url.startswith(("redis://", "rediss://", "unix://")):
            import redis  # only when a broker is configured

            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
            try:
                client.ping()
            finally:
                client.close()
        else:
            from kombu import Connection

            with Connection(url, connect_timeout=2) as conn:
                conn.ensure_connection(max_retries=1)
        return None
    except Exception as e:  # noqa: BLE001
        return _reason(e)


@router.get("/readyz", response_model=Ready,
            responses={503: {"model": NotReady, "description": "A dependency is down; `detail` names it"}})
async def readyz(request: Request) -> Any:
    """Readiness: a database round trip, one through the schedule lookup's own connections
    (``GET /schedules`` uses no other) and, when a broker is configured, a Redis PING."""
    state = request.app.state
    checks: dict[str, str] = {}
    down: list[str] = []

    def record(name: str, label: str, err: str | None) -> None:
        checks[name] = "ok" if err is None else f"down: {err}"
        if err is not None:
            down.append(f"{label} down ({err})")

    record("database", "database", await run_in_threadpool(_ping_database, state.session_factory))
    record("schedule_lookup", "schedule lookup pool", await _ping_lookup(state.version_lookup))
    if state.settings.broker_url:
        record("broker", "broker", await run_in_threadpool(_ping_broker, state.settings.broker_url))
    else:
        checks["broker"] = "none (embedded runner)"
    if down:
        return JSONResponse(status_code=503, content={"detail": "not ready: " + "; ".join(down), "checks": checks})
    return {"status": "ready", "checks": checks}
