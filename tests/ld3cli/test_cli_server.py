"""``ld3 serve``, ``migrate`` and ``worker``: what they set up, and one line naming what is missing."""

from __future__ import annotations

import json

from api_support import ROOT

from ld3cli.main import main
from registry.db import session_scope


def test_serve_without_a_catalog_says_what_to_set(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LD3_MODEL_ROOT", str(tmp_path))
    monkeypatch.delenv("LD3_BROKER_URL", raising=False)
    assert main(["serve", "--no-auth"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LD3_MODEL_ROOT" in err and str(tmp_path) in err


def test_migrate_loads_the_catalog_into_a_new_database(tmp_path, capsys):
    from registry import models as model_q
    from registry.db import make_engine, make_session_factory

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    assert "catalog" in capsys.readouterr().out
    shipped = {m["key"] for m in json.loads((ROOT / "models" / "catalog.json").read_text())}
    engine = make_engine(url)
    try:
        with session_scope(make_session_factory(engine)) as s:
            assert {m.key for m in model_q.list_models(s)} >= shipped
    finally:
        engine.dispose()


def test_worker_refuses_to_start_without_a_broker(monkeypatch, capsys):
    monkeypatch.delenv("LD3_BROKER_URL", raising=False)
    assert main(["worker"]) == 2
    assert "LD3_BROKER_URL" in capsys.readouterr().err
