"""API keys: who is calling and what they may do.

A key comes in ``X-API-Key`` or ``Authorization: Bearer``; the registry stores only its
sha256 (``registry.keys.verify_key``). Scopes: ``schedules:read``, ``jobs:submit``, ``admin``
(admin may do everything). A missing or unknown key is a 401, a missing scope a 403 naming it.
With ``auth_required=False`` (the embedded local mode) every caller holds every scope.

A verified key is remembered for ``KEY_CACHE_TTL_S`` seconds in the process (by its hash), so
the schedule endpoint that inference services poll costs no key query; a revoked key stops
working within that time (at once in the process that revoked it: ``DELETE /keys/{id}`` drops the
entry). Unknown keys are never cached. While the database cannot be reached, a key this process
verified less than ``LD3_STALE_GRACE_S`` ago still passes, as a ``Principal`` marked ``stale``
(a revocation through another process in that time is not seen until the database is back).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from threading import Lock
from typing import Annotated, Callable

from fastapi import Depends, HTTPException, Request
from sqlalchemy.orm import Session, sessionmaker
from starlette.concurrency import run_in_threadpool

from registry import keys
from registry.db import DATABASE_UNREACHABLE
from registry.settings import Settings

log = logging.getLogger(__name__)

READ, SUBMIT, ADMIN = "schedules:read", "jobs:submit", "admin"
SCOPES = (READ, SUBMIT, ADMIN)

# OpenAPI security schemes (api.main adds them to the schema; the headers are read directly,
# which costs a fraction of FastAPI's Security() dependencies on the hot path).
SECURITY_SCHEMES = {
    "ApiKeyHeader": {"type": "apiKey", "in": "header", "name": "X-API-Key", "description": "API key"},
    "BearerKey": {"type": "http", "scheme": "bearer", "description": "API key as a bearer token"},
}


@dataclass(frozen=True)
class Principal:
    """The caller: the key's name and its scopes; ``stale``: verified from the cache only, the
    database being unreachable."""

    name: str
    scopes: frozenset[str]
    stale: bool = False

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or ADMIN in self.scopes


LOCAL = Principal("local (auth disabled)", frozenset(SCOPES))
KEY_CACHE_TTL_S = 10.0


class KeyCache:
    """Principals of recently verified keys, by key hash: ``get`` for ``ttl_s`` seconds after the
    verification, ``get_stale`` (the database unreachable) for ``stale_grace_s``."""

    def __init__(self, ttl_s: float = KEY_CACHE_TTL_S, size: int = 10_000, *, stale_grace_s: float = 0.0) -> None:
        self.ttl_s, self.stale_grace_s, self.size, self.lock = ttl_s, stale_grace_s, size, Lock()
        self.items = dict[str, tuple[Principal, float]]()  # digest -> (principal, verified at, monotonic)

    def get(self, digest: str) -> Principal | None:
        hit = self.items.get(digest)
        if hit is None or time.monotonic() - hit[1] >= self.ttl_s:
            return None
        return hit[0]

    def get_stale(self, digest: str) -> Principal | None:
        """The principal verified less than ``stale_grace_s`` ago, marked stale; else None."""
        hit = self.items.get(digest)
        if hit is None or time.monotonic() - hit[1] >= self.stale_grace_s:
            return None
        return replace(hit[0], stale=True)

    def put(self, digest: str, principal: Principal) -> None:
        with self.lock:
            if len(self.items) >= self.size:
                self.items.clear()
            self.items[digest] = (principal, time.monotonic())

    def discard(self, digest: str) -> None:
        """Forget a key at once (it was revoked through this process)."""
        with self.lock:
            self.items.pop(digest, None)


def _verify(factory: sessionmaker[Session], plaintext: str) -> Principal | None:
    with factory() as s:
        row = keys.verify_key(s, plaintext)
        return None if row is None else Principal(row.name, frozenset(row.scopes))


def _unauthorized(msg: str) -> HTTPException:
    return HTTPException(401, detail=msg, headers={"WWW-Authenticate": 'Bearer, ApiKey header="X-API-Key"'})


def presented_key(request: Request) -> str | None:
    """The key in ``X-API-Key``, else in ``Authorization: Bearer <key>``."""
    key = request.headers.get("x-api-key")
    if key:
        return key
    scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
    return credentials.strip() or None if scheme.lower() == "bearer" else None


async def authenticate(request: Request) -> Principal:
    """The caller's principal; 401 when no key or an unknown/revoked key is given. The database
    unreachable: the cached principal within the grace, else the error goes up (a 503)."""
    state = request.app.state
    if not state.settings.auth_required:
        return LOCAL
    plaintext = presented_key(request)
    if not plaintext:
        raise _unauthorized("missing API key: send it in the X-API-Key header or as Authorization: Bearer <key>")
    digest = keys.hash_key(plaintext)
    principal = state.key_cache.get(digest)
    if principal is None:
        try:
            principal = await run_in_threadpool(_verify, state.session_factory, plaintext)
        except DATABASE_UNREACHABLE:
            principal = state.key_cache.get_stale(digest)
            if principal is None:
                raise
            return principal
        if principal is None:
            raise _unauthorized("unknown or revoked API key")
        state.key_cache.put(digest, principal)
    return principal


def require(scope: str) -> Callable[..., Principal]:
    """A dependency that lets the call through only if the caller's key holds ``scope``."""
    if scope not in SCOPES:
        raise ValueError(f"unknown scope {scope!r}; known: {SCOPES}")

    async def check(request: Request) -> Principal:
        principal = await authenticate(request)  # called, not a sub-dependency: one node less per request
        if not principal.allows(scope):
            raise HTTPException(403, detail=f"API key {principal.name!r} lacks the scope {scope!r}")
        return principal

    check.scope = scope  # type: ignore[attr-defined]  # api.openapi documents 403 for routes with a scope
    return check


ReadDep = Annotated[Principal, Depends(require(READ))]
SubmitDep = Annotated[Principal, Depends(require(SUBMIT))]
AdminDep = Annotated[Principal, Depends(require(ADMIN))]


def bootstrap_admin_key(factory: sessionmaker[Session], settings: Settings) -> None:
    """Make ``settings.admin_key`` a valid admin key (stored hashed; idempotent across restarts).

    A key revoked through ``DELETE /keys`` stays revoked: the log says so instead of calling it valid."""
    if settings.admin_key:
        with factory() as s:
            row = keys.ensure_key(s, settings.admin_key, name="bootstrap-admin", scopes=[ADMIN])
            s.commit()
        if row.revoked_at is None:
            log.info("bootstrap admin key %s... is valid (from LD3_ADMIN_KEY)", row.prefix)
        else:
            log.warning("bootstrap admin key %s... (from LD3_ADMIN_KEY) was revoked at %s and is NOT valid; "
                        "set LD3_ADMIN_KEY to a new random key to have an admin key again", row.prefix,
                        row.revoked_at.isoformat())
    if not settings.auth_required:
        log.warning("AUTHENTICATION IS DISABLED (auth_required=False): every caller has every scope, "
                    "admin included. Use this only for a local embedded service.")
