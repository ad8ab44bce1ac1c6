"""The FastAPI app: ``create_app(settings=None, queue=None)``.

    uvicorn --factory api.main:create_app          # settings from LD3_* variables
    ld3 serve                                       # the same, embedded mode set up for you

``queue`` is where submitted job ids go. Left out: a Celery queue when ``settings.broker_url``
is set, else the in-process runner (``worker.embedded``), started with the app and stopped
with it. Nothing here imports torch: the runner imports it in its own thread.
"""

from __future__ import annotations

import logging
from contextlib import asynccontextmanager
from typing import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy.orm import Session, sessionmaker

from registry import jobs as job_q
from registry.db import make_engine, make_session_factory
from registry.settings import Settings, get_settings
from worker.queue import JobQueue

from . import errors, openapi, outage, params
from .allowed_methods import AllowedMethodsMiddleware
from .auth import KeyCache, bootstrap_admin_key
from .body_limit import BodyLimitMiddleware
from .instrumentation import Metrics, MetricsMiddleware
from .lookup import VersionIdLookup
from .routes import dashboard, health, jobs, keys, me, metrics, models, samples, schedules

log = logging.getLogger(__name__)

DESCRIPTION = """Learns the step times of a diffusion ODE solver (LD3) for a catalog model, solver and
NFE budget, stores each result as an immutable schedule version, and serves the active one.

Authenticate with `X-API-Key: <key>` or `Authorization: Bearer <key>`. Scopes: `schedules:read`,
`jobs:submit`, `admin` (admin may do everything)."""


def count_jobs_by_state(factory: sessionmaker[Session]) -> dict[str, int]:
    """Jobs per state (for the ``ld3_jobs`` gauge); empty if the database does not answer."""
    try:
        with factory() as s:
            return job_q.count_by_state(s)
    except Exception:  # noqa: BLE001 - a scrape must not fail because the database is down; /readyz says so
        log.warning("metrics: cannot count jobs by state", exc_info=True)
        return {}


def _default_queue(settings: Settings, factory: sessionmaker[Session]) -> tuple[JobQueue, object | None]:
    """(queue, embedded runner or None) for the configured mode."""
    if settings.broker_url:
        from worker.celery_app import make_celery
        from worker.queue import CeleryQueue

        return CeleryQueue(make_celery(settings)), None
    from worker.embedded import EmbeddedRunner

    runner = EmbeddedRunner(factory, settings)
    return runner.queue, runner


def create_app(settings: Settings | None = None, queue: JobQueue | None = None) -> FastAPI:
    """The service for ``settings`` (default: from the environment), enqueueing into ``queue``."""
    settings = settings or get_settings()
    engine = make_engine(settings.database_url)
    lookup = VersionIdLookup(settings.database_url, active_ttl_s=settings.active_cache_s,
                             stale_grace_s=settings.stale_grace_s)
    factory = make_session_factory(engine)
    runner = None
    if queue is None:
        queue, runner = _default_queue(settings, factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        bootstrap_admin_key(factory, settings)
        if runner is not None:
            runner.start()
            log.info("embedded runner started (no broker configured): jobs run in this process")
        try:
            yield
        finally:
            if runner is not None:
                runner.stop()
            engine.dispose()
            await lookup.aclose()

    app = FastAPI(title="LD3 schedule service", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  dependencies=[Depends(params.refuse_repeated_query)])
    app.state.settings, app.state.engine, app.state.session_factory = settings, engine, factory
    app.state.version_lookup = lookup
    app.state.queue, app.state.runner = queue, runner
    app.state.schedule_cache, app.state.key_cache = schedules.BodyCache(), KeyCache(stale_grace_s=settings.stale_grace_s)
    app.state.metrics = Metrics(lambda: count_jobs_by_state(factory))
    errors.install(app)
    outage.install(app)
    for r in (jobs.router, schedules.router, samples.router, models.router, keys.router, me.router, health.router,
              metrics.router, dashboard.router):
        app.include_router(r)
    openapi.install(app)
    app.add_middleware(AllowedMethodsMiddleware, routes=app.routes)  # innermost: answers OPTIONS, corrects 405s
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)  # inside CORS: a browser reads the 413
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["ETag"])
    app.add_middleware(MetricsMiddleware, metrics=app.state.metrics)
    return app
