import json
from pathlib import Path

import pytest

from registry import models as q
from registry.db import session_scope

CATALOG = Path(__file__).resolve().parents[2] / "models" / "catalog.json"


def test_upsert_get_list(session_factory, analytic_spec):
    with session_scope(session_factory) as s:
        q.upsert_model(s, analytic_spec)
        q.upsert_model(s, {**analytic_spec, "description": "updated"})
    with session_scope(session_factory) as s:
        (row,) = q.list_models(s)
        assert row.spec["description"] == "updated" and row.spec["sample_shape"] == [2]
        assert q.model_spec(row).key == "gmm" and q.get_model(s, "nope") is None


def test_bad_spec_names_the_field(sqlite_session_factory, analytic_spec):
    with session_scope(sqlite_session_factory) as s, pytest.raises(ValueError, match="'sample_shape'"):
        q.upsert_model(s, {**analytic_spec, "sample_shape": [0]})


def test_sync_shipped_catalog(sqlite_session_factory):
    with session_scope(sqlite_session_factory) as s:
        rows = q.sync_catalog(s, CATALOG)
        assert {r.key for r in rows} == {e["key"] for e in json.loads(CATALOG.read_text())}
        assert "ddpm-digits" in {r.key for r in q.list_models(s)}


def test_sync_bad_catalog_says_where(sqlite_session_factory, analytic_spec, tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps([analytic_spec, {**analytic_spec, "key": "Bad Key"}]))
    with session_scope(sqlite_session_factory) as s, pytest.raises(ValueError, match=r"entry 1 \('Bad Key'\).*'key'"):
        q.sync_catalog(s, path)
    path.write_text("{not json")
    with session_scope(sqlite_session_factory) as s, pytest.raises(ValueError, match="cannot read it as JSON"):
        q.sync_catalog(s, path)
