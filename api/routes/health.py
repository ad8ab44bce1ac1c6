"""``/healthz`` (the process answers) and ``/readyz`` (its database, and broker if any, answer)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import text

from ..deps import SessionDep, SettingsDep

router = APIRouter(tags=["health"])


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


def _ping_database(s: SessionDep) -> str | None:
    try:
        s.execute(text("SELECT 1"))
        return None
    except Exception as e:  # noqa: BLE001 - any failure means "not ready"; say which
        return f"{type(e).__name__}: {e}".splitlines()[0]


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
        return f"{type(e).__name__}: {e}".splitlines()[0]


@router.get("/readyz", response_model=Ready,
            responses={503: {"model": NotReady, "description": "A dependency is down; `detail` names it"}})
def readyz(s: SessionDep, settings: SettingsDep) -> Any:
    """Readiness: a database round trip and, when a broker is configured, a Redis PING."""
    checks: dict[str, str] = {}
    down: list[str] = []
    err = _ping_database(s)
    checks["database"] = "ok" if err is None else f"down: {err}"
    if err is not None:
        down.append(f"database down ({err})")
    if settings.broker_url:
        err = _ping_broker(settings.broker_url)
        checks["broker"] = "ok" if err is None else f"down: {err}"
        if err is not None:
            down.append(f"broker down ({err})")
    else:
        checks["broker"] = "none (embedded runner)"
    if down:
        return JSONResponse(status_code=503, content={"detail": "not ready: " + "; ".join(down), "checks": checks})
    return {"status": "ready", "checks": checks}
