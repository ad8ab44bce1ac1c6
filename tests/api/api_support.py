"""Helpers of the API tests (imported by conftest.py and the test modules)."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from registry.schemas import ScheduleVersionCreate
from registry.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
ADMIN_KEY = "ld3_test-admin-key-0123456789abcdef"
CLASS_MODEL = {
    "key": "cond-digits", "format": "diffusers", "location": "cond-digits", "schedule": "from_scheduler_config",
    "prediction": "from_scheduler_config", "sample_shape": [1, 8, 8], "conditioning": "class", "sha256": "0" * 64,
    "num_classes": 10, "null_class": 10,
}


ADMIN = {"X-API-Key": ADMIN_KEY}


class RecordingQueue:
    """Records enqueued ids and whether each job was visible, committed, to another session."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self.factory, self.ids, self.committed = factory, [], []
        self.fail: Exception | None = None

    def enqueue(self, job_id: str) -> None:
        if self.fail is not None:
            raise self.fail
        from registry.tables import JobRow

        with self.factory() as s:
            row = s.get(JobRow, job_id)
            self.committed.append(row is not None and row.state == "queued")
        self.ids.append(job_id)


def settings_for(db_url: str, **overrides: Any) -> Settings:
    # active_cache_s=0: these tests move the active pointer as a worker would (straight in the
    # database) and expect the next request to see it; the TTL itself is tested in test_lookup.py.
    base = {"database_url": db_url, "broker_url": None, "admin_key": ADMIN_KEY, "auth_required": True, "active_cache_s": 0,
            "model_root": str(ROOT / "models"), "catalog_file": str(ROOT / "models" / "catalog.json")}
    return Settings(**{**base, **overrides})


class _BrokenSqlite:
    """Stands in for the lookup's SQLite connection once its file cannot be read any more."""

    driver_connection = property(lambda self: self)

    def execute(self, *_: Any) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    def invalidate(self) -> None:
        pass


@contextmanager
def database_down(app: Any) -> Iterator[None]:
    """The app's database unreachable inside the block, back after it.

    PostgreSQL, for real: the server refuses new connections to the test database and ends the
    ones it has (what a stopped server or a restart does to a client). SQLite (a local file,
    which cannot go away under an open connection): every new connection of the app's engines
    fails and the lookup's persistent connection raises, as they would on an unreadable file."""
    url = app.state.settings.database_url
    lookup = app.state.version_lookup
    if make_url(url).get_backend_name() != "sqlite":
        name = make_url(url).database
        admin = make_url(url).set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", [name])
        try:
            yield
        finally:
            with psycopg.connect(admin, autocommit=True) as conn:
                conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
        return

    def refuse(*_: Any) -> None:
        raise sqlite3.OperationalError("unable to open database file")

    engines = (app.state.engine, lookup.engine)
    for engine in engines:
        event.listen(engine, "do_connect", refuse)
        engine.dispose()
    if lookup._conn is not None:
        lookup._conn.invalidate()
        lookup._conn = _BrokenSqlite()
    try:
        yield
    finally:
        for engine in engines:
            event.remove(engine, "do_connect", refuse)
        if isinstance(lookup._conn, _BrokenSqlite):
            lookup._conn = None


def vp_linear_alphas_cumprod(n: int = 1000) -> list[float]:
    """DDPM's linear-beta schedule (1e-4 .. 0.02), as a catalog vp_discrete config holds it."""
    out, prod = [], 1.0
    for i in range(n):
        prod *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / (n - 1))
        out.append(prod)
    return out


def version_data(nfe: int = 5, *, model: str = "ddpm-digits", solver: str = "unipc", shift: float = 0.0,
                 guidance: float | None = None) -> ScheduleVersionCreate:
    """A consistent VP-discrete version: N+1 decreasing times, their sigmas and model timesteps."""
    ac = vp_linear_alphas_cumprod()
    n = nfe if solver != "heun" else (nfe + 1) // 2
    t = [1.0 - (1.0 - 0.002 - shift) * (i / n) ** 0.8 for i in range(n + 1)]
    t[0] = 1.0

    def sigma(x: float) -> float:
        a = ac[min(len(ac) - 1, max(0, round(x * len(ac)) - 1))]
        return math.sqrt((1 - a) / a)

    sig = [sigma(x) + 1e-9 * (n - i) for i, x in enumerate(t)]
    return ScheduleVersionCreate(
        model_key=model, solver=solver, nfe=nfe, guidance=guidance, t_steps=t, t_model=t,
        time_space="vp_discrete t in (0,1]", sigmas=sig, model_timesteps=[x * 1000 - 1 for x in t],
        schedule_config={"name": "vp_discrete", "alphas_cumprod": ac}, source="ld3", model_sha256="c" * 64,
        config={"ld3": {"solver": solver, "nfe": nfe}}, seed=0, code_version="0.1.0+test", val_loss=0.01,
        quality={"metric": "l2", "n_test": 10, "source": "ld3", "message": "LD3 beats the best heuristic",
                 "learned": {"mean": 0.01, "sem": 0.001}, "best_heuristic": {"name": "logsnr", "mean": 0.02, "sem": 0.002},
                 "learned_minus_best": {"mean": -0.01, "sem": 0.001},
                 "heuristics": {"logsnr": {"mean": 0.02, "sem": 0.002}, "time_uniform": {"mean": 0.5, "sem": 0.01}}},
    )
