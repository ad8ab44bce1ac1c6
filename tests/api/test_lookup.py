"""api.lookup: the one indexed query of GET /schedules, on SQLite (inline) and PostgreSQL (pooled)."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import make_url

from api.lookup import VersionIdLookup
from registry import schedules as sq
from registry.db import session_scope


def _lookup(db_url, *args):
    async def run():
        lookup = VersionIdLookup(db_url, active_ttl_s=0)  # every read goes to the database
        try:
            return await lookup(*args)
        finally:
            await lookup.aclose()

    return asyncio.run(run())


def test_active_and_numbered_versions(db_url, factory, add_version):
    add_version(5)
    add_version(5, promote=False)
    with factory() as s:
        v1, v2 = (r.id for r in sq.list_versions(s, "ddpm-digits", "unipc", 5))

    async def run():
        lookup = VersionIdLookup(db_url, active_ttl_s=0)  # every read goes to the database
        try:
            assert lookup.kind == ("sqlite" if db_url.startswith("sqlite") else "postgresql")
            assert await lookup("ddpm-digits", "unipc", 5, None, None) == v1
            assert await lookup("ddpm-digits", "unipc", 5, None, 2) == v2
            assert await lookup("ddpm-digits", "unipc", 5, None, 3) is None
            assert await lookup("ddpm-digits", "unipc", 6, None, None) is None
            assert await lookup("ddpm-digits", "unipc", 5, 2.0, None) is None
            with session_scope(factory) as s:
                sq.promote(s, v2, actor="test")
            assert await lookup("ddpm-digits", "unipc", 5, None, None) == v2  # the next read sees the promotion
            found = await asyncio.gather(*(lookup("ddpm-digits", "unipc", 5, None, v) for v in (1, 2, 1, 2, 1, 2)))
            assert found == [v1, v2] * 3  # concurrent reads share the few connections
        finally:
            await lookup.aclose()

    asyncio.run(run())


def test_the_pooled_path_for_other_drivers_answers_the_same(db_url, factory, add_version):
    add_version(5)
    lookup = VersionIdLookup(db_url, active_ttl_s=0)  # every read goes to the database
    try:
        params = {"model": "ddpm-digits", "solver": "unipc", "nfe": 5, "gk": "", "version": None}
        with factory() as s:
            assert lookup._pooled(params) == sq.get_active(s, "ddpm-digits", "unipc", 5).id
    finally:
        asyncio.run(lookup.aclose())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_sqlite_read_does_not_wait_for_an_open_write_transaction(db_url, add_version):
    sqlite_url = db_url
    add_version(5)
    writer = create_engine(sqlite_url).raw_connection().driver_connection
    writer.isolation_level = None
    writer.execute("BEGIN IMMEDIATE")  # a worker's write transaction, holding the write lock
    try:
        writer.execute("UPDATE active_schedules SET updated_at = updated_at")
        assert _lookup(sqlite_url, "ddpm-digits", "unipc", 5, None, None) is not None
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_the_active_pointer_is_reused_for_its_ttl_and_forgotten_on_promotion(db_url, factory, add_version):
    add_version(5)
    add_version(5, promote=False)
    with factory() as s:
        v1, v2 = (r.id for r in sq.list_versions(s, "ddpm-digits", "unipc", 5))

    def promote_elsewhere(vid):  # another process (a worker, another API replica) moves the pointer
        with session_scope(factory) as s:
            sq.promote(s, vid)

    async def run():
        cached, fresh = VersionIdLookup(db_url, active_ttl_s=3600), VersionIdLookup(db_url, active_ttl_s=0)
        try:
            assert await cached("ddpm-digits", "unipc", 5, None, None) == v1
            assert await fresh("ddpm-digits", "unipc", 5, None, None) == v1
            promote_elsewhere(v2)
            assert await cached("ddpm-digits", "unipc", 5, None, None) == v1  # within its TTL
            assert await fresh("ddpm-digits", "unipc", 5, None, None) == v2  # TTL 0: every request reads
            cached.forget_active()  # what a promotion through this process does
            assert await cached("ddpm-digits", "unipc", 5, None, None) == v2
            assert await cached("ddpm-digits", "unipc", 5, None, 1) == v1  # pinned versions never change
        finally:
            await cached.aclose()
            await fresh.aclose()

    asyncio.run(run())


def test_queries_the_database_refuses_give_their_connection_back(db_url, add_version):
    """A NUL in a text parameter or an integer beyond the column makes the driver or the server refuse
    the query; each must hand its connection back, or after as many as the pool holds every
    lookup waits for good (GET /schedules hung while /readyz said 200)."""
    add_version(5)
    refused = [("ddpm-\x00", "unipc", 5, None, None), ("ddpm-digits", "unipc", 5, None, 2**31),
               ("ddpm-digits", "unipc", 5, None, 2**63)]

    async def run():
        lookup = VersionIdLookup(db_url, active_ttl_s=0)  # every read goes to the database
        try:
            pool_size = lookup._pg.size if lookup._pg is not None else 1
            for args in refused * (pool_size + 1):
                try:
                    await asyncio.wait_for(lookup(*args), timeout=10)
                except (psycopg.DataError, OverflowError):
                    pass  # refused (PostgreSQL; SQLite for 2**63), which is fine; waiting is not
            answered = await asyncio.wait_for(lookup("ddpm-digits", "unipc", 5, None, None), timeout=10)
            assert answered is not None
        finally:
            await lookup.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
def test_a_connection_the_server_dropped_is_replaced(db_url, add_version):
    add_version(5)

    async def run():
        lookup = VersionIdLookup(db_url, active_ttl_s=0)
        try:
            first = await lookup("ddpm-digits", "unipc", 5, None, None)
            (conn,) = lookup._pg.idle
            with psycopg.connect(make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False),
                                 autocommit=True) as admin:
                admin.execute("SELECT pg_terminate_backend(%s)", [conn.info.backend_pid])  # a server restart, for one connection
            assert await asyncio.wait_for(lookup("ddpm-digits", "unipc", 5, None, None), timeout=10) == first
            assert conn.closed and lookup._pg.idle and lookup._pg.idle[0] is not conn
        finally:
            await lookup.aclose()

    asyncio.run(run())


def test_an_unreachable_database_serves_the_active_version_it_resolved_within_the_grace(db_url, factory, add_version):
    add_version(5)
    add_version(5, promote=False)
    active = ("ddpm-digits", "unipc", 5, None, None)

    async def unreachable(params):
        raise psycopg.OperationalError("the database system is shutting down")

    async def run():
        lookup = VersionIdLookup(db_url, active_ttl_s=0, stale_grace_s=0.5)
        try:
            vid, stale = await lookup.resolve(*active)
            assert vid is not None and not stale
            pinned = await lookup("ddpm-digits", "unipc", 5, None, 2)
            lookup._query = unreachable
            assert await lookup.resolve(*active) == (vid, True)
            assert await lookup.resolve("ddpm-digits", "unipc", 5, None, 2) == (pinned, False)  # immutable: no query
            with pytest.raises(psycopg.OperationalError):
                await lookup.resolve("ddpm-digits", "unipc", 6, None, None)  # never resolved: nothing to serve
            await asyncio.sleep(0.5)
            with pytest.raises(psycopg.OperationalError):
                await lookup.resolve(*active)  # the grace is over
        finally:
            await lookup.aclose()

    asyncio.run(run())


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_sqlite_connection_that_failed_is_replaced(db_url, add_version):
    add_version(5)

    class Broken:
        driver_connection = property(lambda self: self)

        def execute(self, *_):
            raise sqlite3.OperationalError("disk I/O error")

        def invalidate(self):
            pass

    async def run():
        lookup = VersionIdLookup(db_url, active_ttl_s=0)
        try:
            first = await lookup("ddpm-digits", "unipc", 5, None, None)
            lookup._conn = Broken()
            with pytest.raises(sqlite3.OperationalError):
                await lookup("ddpm-digits", "unipc", 5, None, None)
            assert await lookup("ddpm-digits", "unipc", 5, None, None) == first  # a new connection
        finally:
            await lookup.aclose()

    asyncio.run(run())
