"""The hot path's one indexed query: which schedule version id does ``GET /schedules`` serve?

The active pointer by its primary key, or a version by its unique key (the statements are
``registry.schedules.ACTIVE_VERSION_ID`` and ``VERSION_ID``; this module owns only the
connections they run on), read outside any transaction. SQLite (the embedded mode, a local file): on the event loop, through one
persistent driver connection and the statement compiled once; in WAL mode such a read never
waits for a writer, and it costs less than the hop to a worker thread would. PostgreSQL: a
few psycopg async connections (autocommit) owned by the event loop, so the round trip is
awaited instead of parked in a worker thread (under concurrent load the thread hop cost
several times the query). Any other database: a pooled connection in a worker thread.

Resolved ids are kept in the process: a pinned ``?version=`` forever (versions are immutable),
the active pointer for ``active_ttl_s`` (``LD3_ACTIVE_CACHE_S``, default 1 s; a promotion
through this process clears it at once, one through another process or a finished job shows
within the TTL — well inside the ``max-age=30`` the responses already allow clients). While the
database cannot be reached, an active pointer resolved less than ``stale_grace_s``
(``LD3_STALE_GRACE_S``) ago is served, said to be stale (``resolve``); past that, or never
resolved here, the error goes up (``api.outage``: a 503).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from threading import Lock
from typing import Any

import psycopg
from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from starlette.concurrency import run_in_threadpool

from registry.db import DATABASE_UNREACHABLE, PING_SQL
from registry.db import ping as ping_database
from registry.schedules import ACTIVE_VERSION_ID, VERSION_ID, guidance_key

SQLITE_READ_TIMEOUT_S = 5.0
PG_CONNECT_TIMEOUT_S = 5  # a server that does not answer (a partition) fails a lookup, it does not hang it


def make_read_engine(url: str) -> Engine:
    """Statements outside any transaction. SQLite: without ``registry.db``'s ``BEGIN IMMEDIATE``
    (right for writers, a needless lock for a one-row read). PostgreSQL: autocommit and no
    pre-ping round trip per checkout (``VersionIdLookup`` retries once on a dropped connection)."""
    if make_url(url).get_backend_name() == "sqlite":
        return create_engine(url, connect_args={"check_same_thread": False, "timeout": SQLITE_READ_TIMEOUT_S})
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=False)


class AsyncPgConnections:
    """Up to ``size`` autocommit psycopg async connections, opened on first use in the running loop.

    A query holds one of ``size`` slots; whatever ends it (a result, a refused parameter, a dropped
    connection, a cancelled request), the slot is freed and the connection goes back idle if it is
    clean, else it is closed (the next query opens a new one)."""

    def __init__(self, url: str, size: int = 4) -> None:
        self.dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.size = size
        self.idle: list[psycopg.AsyncConnection] = []
        self.slots: asyncio.Semaphore | None = None

    async def fetch_one(self, sql: str, params: dict[str, Any]) -> tuple | None:
        """The first row of ``sql``; a connection the server dropped is replaced and the query retried once."""
        if self.slots is None:
            self.slots = asyncio.Semaphore(self.size)
        for attempt in (1, 2):
            async with self.slots:
                conn = self.idle.pop() if self.idle else await psycopg.AsyncConnection.connect(
                    self.dsn, autocommit=True, connect_timeout=PG_CONNECT_TIMEOUT_S)
                try:
                    cur = await conn.execute(sql, params, prepare=True)
                    return await cur.fetchone()
                except psycopg.OperationalError:
                    if attempt == 2:
                        raise
                finally:
                    await self._put_back(conn)
        return None

    async def _put_back(self, conn: psycopg.AsyncConnection) -> None:
        """Idle again if the connection is open and between statements, else closed."""
        if not conn.closed and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            self.idle.append(conn)
        else:
            await conn.close()

    async def aclose(self) -> None:
        while self.idle:
            await self.idle.pop().close()


class VersionIdLookup:
    """``await lookup.resolve(model, solver, nfe, guidance, version)`` -> (the version id to serve
    or None, whether it is served stale); ``await lookup(...)``: the id alone."""

    MAX_CACHED = 10_000

    def __init__(self, url: str, *, active_ttl_s: float = 1.0, stale_grace_s: float = 0.0) -> None:
        self.active_ttl_s, self.stale_grace_s = active_ttl_s, stale_grace_s
        self._ids: dict[tuple, tuple[float, int]] = {}  # (model, solver, nfe, gk, version) -> (resolved at, id)
        self.engine = make_read_engine(url)
        self.kind = {"sqlite": "sqlite", "postgresql": "postgresql"}.get(self.engine.dialect.name, "pooled")
        if self.kind == "postgresql" and self.engine.dialect.driver != "psycopg":
            self.kind = "pooled"
        self.inline = self.kind == "sqlite"
        self._conn: Any = None  # SQLite: a pool connection held checked out, this lookup's own
        self._lock = Lock()
        self._pg = AsyncPgConnections(url) if self.kind == "postgresql" else None
        self._sql = {}
        for name, stmt in (("active", ACTIVE_VERSION_ID), ("version", VERSION_ID)):
            compiled = stmt.compile(dialect=self.engine.dialect)
            self._sql[name] = (str(compiled), tuple(compiled.positiontup or ()))

    async def __call__(self, model: str, solver: str, nfe: int, guidance: float | None, version: int | None) -> int | None:
        return (await self.resolve(model, solver, nfe, guidance, version))[0]

    async def resolve(self, model: str, solver: str, nfe: int, guidance: float | None,
                      version: int | None) -> tuple[int | None, bool]:
        params = {"model": model, "solver": solver, "nfe": nfe, "gk": guidance_key(guidance), "version": version}
        key, now = tuple(params.values()), time.monotonic()
        hit = self._ids.get(key)
        if hit is not None and (version is not None or now - hit[0] < self.active_ttl_s):
            return hit[1], False
        try:
            vid = await self._query(params)
        except DATABASE_UNREACHABLE:
            if hit is not None and now - hit[0] < self.stale_grace_s:
                return hit[1], True  # what the database said last, within the grace
            raise
        if vid is not None:  # a miss is never kept: the version may appear any moment
            if len(self._ids) >= self.MAX_CACHED:
                self._ids.clear()
            self._ids[key] = (now, vid)
        return vid, False

    async def ping(self) -> None:
        """``registry.db.PING_SQL`` through the lookup's own connections (``/readyz``): raises what a lookup
        would, or waits as long as a lookup would for a free connection."""
        if self.kind == "sqlite":
            self._sqlite_row(PING_SQL, [])
        elif self.kind == "postgresql":
            await self._pg.fetch_one(PING_SQL, {})
        else:
            await run_in_threadpool(self._pooled_ping)

    def describe(self) -> str:
        """What the lookup reads through, for a readiness message."""
        if self.kind == "sqlite":
            return "one SQLite connection"
        if self.kind == "postgresql":
            return f"{self._pg.size} PostgreSQL connections"
        return f"a pool ({self.engine.pool.status()})"

    def forget_active(self) -> None:
        """Drop the cached active pointers (after a promotion in this process)."""
        self._ids = {k: v for k, v in self._ids.items() if k[-1] is not None}

    async def _query(self, params: dict[str, Any]) -> int | None:
        if self.kind == "sqlite":
            return self._sqlite(params)
        if self.kind == "postgresql":
            sql, _ = self._sql["active" if params["version"] is None else "version"]
            row = await self._pg.fetch_one(sql, params)
            return None if row is None else row[0]
        return await run_in_threadpool(self._pooled, params)

    def _sqlite(self, params: dict[str, Any]) -> int | None:
        sql, order = self._sql["active" if params["version"] is None else "version"]
        row = self._sqlite_row(sql, [params[k] for k in order])
        return None if row is None else row[0]

    def _sqlite_row(self, sql: str, args: list[Any]) -> tuple | None:
        """One row through the persistent connection; one that failed is closed (the next read opens another)."""
        if self._conn is None:
            with self._lock:
                if self._conn is None:
                    self._conn = self.engine.raw_connection()
        try:
            return self._conn.driver_connection.execute(sql, args).fetchone()
        except sqlite3.OperationalError:
            conn, self._conn = self._conn, None
            conn.invalidate()
            raise

    def _pooled(self, params: dict[str, Any]) -> int | None:
        stmt = ACTIVE_VERSION_ID if params["version"] is None else VERSION_ID
        for attempt in (1, 2):
            try:
                with self.engine.connect() as conn:
                    return conn.execute(stmt, params).scalar_one_or_none()
            except DBAPIError as e:
                if attempt == 2 or not e.connection_invalidated:
                    raise  # a pooled connection the server dropped (restart) is retried once on a fresh one
        return None

    def _pooled_ping(self) -> None:
        with self.engine.connect() as conn:
            ping_database(conn)

    async def aclose(self) -> None:
        """Close the connections (in the loop that opened them)."""
        if self._pg is not None:
            await self._pg.aclose()
        if self._conn is not None:
            self._conn.invalidate()
            self._conn = None
        self.engine.dispose()
