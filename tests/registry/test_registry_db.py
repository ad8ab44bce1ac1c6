import datetime as dt

import pytest
from sqlalchemy import select, text
from sqlalchemy.exc import OperationalError, StatementError
from sqlalchemy.orm import Session

from registry.db import json_safe, make_engine, ping, session_scope
from registry.tables import ModelRow

EST = dt.timezone(dt.timedelta(hours=-5))


def test_datetimes_come_back_aware_utc(session_factory, analytic_spec):
    written = dt.datetime(2024, 3, 1, 7, 30, tzinfo=EST)
    with session_scope(session_factory) as s:
        s.add(ModelRow(key="gmm", spec=analytic_spec, created_at=written))
    with session_scope(session_factory) as s:
        got = s.scalar(select(ModelRow.created_at))
        assert got == written and got.tzinfo == dt.timezone.utc and got.hour == 12
        # Comparisons in SQL see the same instant whatever zone the bound value is in.
        assert s.scalar(select(ModelRow.key).where(ModelRow.created_at < dt.datetime(2024, 3, 1, 8, tzinfo=EST)))


def test_naive_datetime_refused(sqlite_session_factory, analytic_spec):
    with pytest.raises(StatementError, match="naive datetime"):
        with session_scope(sqlite_session_factory) as s:
            s.add(ModelRow(key="gmm", spec=analytic_spec, created_at=dt.datetime(2024, 1, 1)))


def test_session_scope_rolls_back(session_factory, analytic_spec):
    with pytest.raises(RuntimeError):
        with session_scope(session_factory) as s:
            s.add(ModelRow(key="gmm", spec=analytic_spec))
            s.flush()
            raise RuntimeError("boom")
    with session_scope(session_factory) as s:
        assert s.scalar(select(ModelRow)) is None


def test_sqlite_engine_settings(tmp_path):
    path = tmp_path / "deep" / "folder" / "x.db"
    engine = make_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    assert path.exists()
    engine.dispose()


def test_sqlite_foreign_keys_enforced(sqlite_session_factory):
    from sqlalchemy.exc import IntegrityError

    with pytest.raises(IntegrityError):
        with session_scope(sqlite_session_factory) as s:
            s.execute(text("INSERT INTO job_events (job_id, at, kind, message) VALUES ('nope', '2024-01-01', 'submitted', '')"))


def test_json_safe_turns_non_finite_floats_into_null_at_any_depth():
    nan, inf = float("nan"), float("inf")
    assert json_safe(nan) is None and json_safe(-inf) is None and json_safe(0.5) == 0.5 and json_safe(None) is None
    assert json_safe({"a": [1.0, nan, (inf, "x")], 2: {"b": True}}) == {"a": [1.0, None, [None, "x"]], "2": {"b": True}}


def test_ping_answers_or_raises(session_factory):
    with session_factory() as s:
        ping(s)
    nobody = make_engine("postgresql+psycopg://ld3:ld3@127.0.0.1:1/ld3")  # nothing listens on port 1
    try:
        with pytest.raises(OperationalError), Session(nobody) as s:
            ping(s)
    finally:
        nobody.dispose()
