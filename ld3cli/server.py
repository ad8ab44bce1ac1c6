"""The commands that run the service: serve, migrate, worker."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any


def _serve_settings(args: argparse.Namespace):
    from registry.settings import Settings

    overrides: dict[str, Any] = {}
    if args.no_auth:
        overrides["auth_required"] = False
    if args.database_url:
        overrides["database_url"] = args.database_url
    return Settings(**overrides)


def prepare_database(settings) -> None:
    """Migrate the database and load the catalog file into it (embedded start, ``ld3 migrate``)."""
    from registry import models as model_q
    from registry.db import make_engine, make_session_factory, session_scope, upgrade

    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as s:
            model_q.sync_catalog(s, settings.catalog_file)
    finally:
        engine.dispose()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Distributed mode's one-shot set-up: migrations, then the model catalog file into the database."""
    import logging

    from registry.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(**({"database_url": args.database_url} if args.database_url else {}))
    if problem := settings.catalog_problem():
        print(f"ld3 migrate: error: {problem}", file=sys.stderr)
        return 1
    prepare_database(settings)
    print(f"database {settings.database_url} migrated; catalog {settings.catalog_file} loaded", flush=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from api.main import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _serve_settings(args)
    if settings.embedded or args.migrate:
        if problem := settings.catalog_problem():
            print(f"ld3 serve: error: {problem}", file=sys.stderr)
            return 1
        prepare_database(settings)
    app = create_app(settings)
    url = f"http://{args.host}:{args.port}"
    mode = "embedded runner (no broker)" if settings.embedded else f"Celery broker {settings.broker_url}"
    print(f"LD3 service at {url}  (docs {url}/docs; database {settings.database_url}; {mode})", flush=True)
    if settings.auth_required and not settings.admin_key:
        print("note: authentication is on and no LD3_ADMIN_KEY is set: only keys already in the database work "
              "(use --no-auth for a local service)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    """Exec a Celery worker on the GPU queue; arguments ``ld3 worker`` does not know go to celery (``args.extra``)."""
    from registry.settings import Settings

    if not Settings().broker_url:
        print("ld3 worker: error: LD3_BROKER_URL is not set (e.g. redis://127.0.0.1:6379/0); "
              "without a broker `ld3 serve` runs jobs itself", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "gpu", "--pool", "solo",
           "--concurrency", "1", "--prefetch-multiplier", "1", "-n", args.name, "-l", args.loglevel, *args.extra]
    os.execv(sys.executable, cmd)
    return 0  # not reached


def add_parsers(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("serve", help="run the API (and, with no broker configured, the embedded runner)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--no-auth", action="store_true", help="every caller gets every scope (local use only)")
    s.add_argument("--database-url", help="overrides LD3_DATABASE_URL")
    s.add_argument("--migrate", action="store_true",
                   help="with a broker: run the migrations and load the catalog first (embedded mode always does)")
    s.add_argument("--log-level", default="info")
    s.set_defaults(run=cmd_serve)

    mg = sub.add_parser("migrate", help="migrate the database and load the model catalog (distributed mode's set-up)")
    mg.add_argument("--database-url", help="overrides LD3_DATABASE_URL")
    mg.set_defaults(run=cmd_migrate)

    w = sub.add_parser("worker", help="run a Celery GPU worker (extra arguments go to celery)")
    w.add_argument("--name", default="ld3-gpu@%h", help="Celery node name")
    w.add_argument("--loglevel", default="info")
    w.set_defaults(run=cmd_worker, takes_extra=True)
