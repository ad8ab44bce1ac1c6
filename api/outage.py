"""What the API answers while its database cannot be reached.

Any route whose query fails with one of ``registry.db.DATABASE_UNREACHABLE`` (a stopped or
restarting server, a dropped connection, a pool timeout) answers 503 with ``Retry-After`` and a
``detail`` naming the database: one handler for the whole app, installed by ``install``. Every
other database error stays what it was (a 500).

``GET /schedules`` does better: it serves what this process resolved from the database less than
``LD3_STALE_GRACE_S`` ago — the active pointer (``api.lookup``), the caller's key
(``api.auth``), the rendered body (never stale: versions are immutable) — and marks such a
response with ``X-LD3-Stale: true``.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from registry.db import DATABASE_UNREACHABLE

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5  # a restart takes seconds; clients come back after this
STALE_HEADER = "X-LD3-Stale"


async def _database_unreachable(request: Request, exc: Exception) -> JSONResponse:
    reason = (str(getattr(exc, "orig", None) or exc).splitlines() or [""])[0]
    log.warning("%s %s: 503, database unreachable: %s: %s", request.method, request.url.path, type(exc).__name__, reason)
    return JSONResponse(status_code=503, headers={"Retry-After": str(RETRY_AFTER_S)},
                        content={"detail": f"database unreachable ({type(exc).__name__}); retry in {RETRY_AFTER_S} s"})


def install(app: FastAPI) -> None:
    """Answer a 503 for every request that could not reach the database."""
    for error in DATABASE_UNREACHABLE:
        app.add_exception_handler(error, _database_unreachable)
