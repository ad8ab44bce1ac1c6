import pytest
from sqlalchemy import inspect

from registry import schedules as q
from registry.db import session_scope
from registry.models import upsert_model
from registry.schemas import ScheduleVersionCreate


@pytest.fixture
def db(session_factory, analytic_spec):
    with session_scope(session_factory) as s:
        upsert_model(s, analytic_spec)
    return session_factory


def version(nfe=2, guidance=None, **kw) -> ScheduleVersionCreate:
    t = [80.0, 1.0, 0.002, 0.001][: nfe + 1]
    data = dict(model_key="gmm", solver="dpmpp_2m", nfe=nfe, guidance=guidance, t_steps=t, t_model=t,
                time_space="edm sigma", sigmas=t, model_timesteps=t, schedule_config={"name": "edm"}, source="ld3",
                config={}, seed=0, code_version="test", quality={})
    return ScheduleVersionCreate(**{**data, **kw})


def test_guidance_key():
    assert q.guidance_key(None) == "" and q.guidance_key(7) == q.guidance_key(7.0) == "7.0"


def test_versions_numbered_per_key(db):
    with session_scope(db) as s:
        a1, a2 = q.create_version(s, version()), q.create_version(s, version())
        g1 = q.create_version(s, version(guidance=7.5))
        n1 = q.create_version(s, version(nfe=3))
        assert [v.version for v in (a1, a2, g1, n1)] == [1, 2, 1, 1]
        assert [v.id for v in q.list_versions(s, "gmm", "dpmpp_2m", 2)] == [a1.id, a2.id]
        assert [v.id for v in q.list_versions(s, "gmm", "dpmpp_2m", 2, 7.5)] == [g1.id]
        assert q.get_version(s, "gmm", "dpmpp_2m", 2, 2).id == a2.id
        assert q.get_version(s, "gmm", "dpmpp_2m", 2, 3) is None
        assert q.get_active(s, "gmm", "dpmpp_2m", 2) is None  # created, not promoted
        assert q.available_nfes(s, "gmm", "dpmpp_2m") == []


def test_promote_and_rollback_move_the_pointer_with_an_audit_trail(db):
    with session_scope(db) as s:
        v1, v2 = q.create_version(s, version()), q.create_version(s, version())
        q.promote(s, v1.id, actor="job a")
        q.promote(s, v2.id, actor="job b")
        assert q.get_active(s, "gmm", "dpmpp_2m", 2).id == v2.id
        q.promote(s, v1.id, actor="admin")  # rollback
        assert q.get_active(s, "gmm", "dpmpp_2m", 2).id == v1.id
        promoted = [(e.version_id, e.previous_version_id, e.actor)
                    for e in q.schedule_events(s, "gmm", "dpmpp_2m", 2) if e.kind == "promoted"]
        assert promoted == [(v1.id, None, "job a"), (v2.id, v1.id, "job b"), (v1.id, v2.id, "admin")]
        with pytest.raises(LookupError, match="version id 999"):
            q.promote(s, 999)


def test_available_nfes_and_guidance_separation(db):
    with session_scope(db) as s:
        for nfe, g in ((3, None), (2, 7.5)):
            q.promote(s, q.create_version(s, version(nfe=nfe, guidance=g)).id)
        assert q.available_nfes(s, "gmm", "dpmpp_2m") == [2, 3]
        assert q.get_active(s, "gmm", "dpmpp_2m", 2) is None
        assert q.get_active(s, "gmm", "dpmpp_2m", 2, 7.5).guidance == 7.5


def test_samples_png_is_stored_but_not_loaded_with_the_row(db):
    with session_scope(db) as s:
        vid = q.create_version(s, version(samples_png=b"\x89PNG...")).id
    with session_scope(db) as s:
        row = q.get_version_by_id(s, vid)
        assert "samples_png" in inspect(row).unloaded
        assert row.samples_png == b"\x89PNG..."


def test_list_active_is_one_version_per_key_in_key_order(db):
    with session_scope(db) as s:
        old = q.create_version(s, version(nfe=3))
        q.promote(s, old.id)
        q.promote(s, q.create_version(s, version(nfe=3)).id)
        q.promote(s, old.id)  # rolled back: the older version is the active one
        q.promote(s, q.create_version(s, version(nfe=2, guidance=7.5)).id)
        q.promote(s, q.create_version(s, version(nfe=2)).id)
        q.create_version(s, version(nfe=1))  # never promoted
        assert [(v.nfe, v.guidance, v.version) for v in q.list_active(s)] == [(2, None, 1), (2, 7.5, 1), (3, None, 1)]


def test_get_version_loads_the_sample_grid_only_when_asked(db):
    with session_scope(db) as s:
        with_grid = q.create_version(s, version(samples_png=b"\x89PNG..."))
        without = q.create_version(s, version())
        ids = (with_grid.id, without.id)
    with session_scope(db) as s:
        plain = q.get_version(s, "gmm", "dpmpp_2m", 2, 1)
        assert "samples_png" in inspect(plain).unloaded
    with session_scope(db) as s:
        loaded = q.get_version(s, "gmm", "dpmpp_2m", 2, 1, samples=True)
        assert "samples_png" not in inspect(loaded).unloaded and loaded.samples_png == b"\x89PNG..."
    with session_scope(db) as s:
        assert [q.has_samples(s, i) for i in ids] == [True, False]
        assert "samples_png" in inspect(q.get_version_by_id(s, ids[0])).unloaded  # has_samples did not load it


def test_the_serving_statements_find_the_active_and_a_given_version_id(db):
    with session_scope(db) as s:
        v1, v2 = q.create_version(s, version(guidance=7.5)), q.create_version(s, version(guidance=7.5))
        q.promote(s, v1.id)
        key = {"model": "gmm", "solver": "dpmpp_2m", "nfe": 2, "gk": q.guidance_key(7.5)}
        assert s.execute(q.ACTIVE_VERSION_ID, key).scalar_one() == v1.id
        assert s.execute(q.VERSION_ID, {**key, "version": 2}).scalar_one() == v2.id
        assert s.execute(q.ACTIVE_VERSION_ID, {**key, "gk": ""}).scalar_one_or_none() is None
