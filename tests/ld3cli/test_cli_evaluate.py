"""``ld3 evaluate``: the table printed and written, one line on bad input (the evaluation itself: tests/worker/test_evaluate.py)."""

from __future__ import annotations

import json
from pathlib import Path

from ld3cli.main import main
from ld3core.heuristics import HEURISTICS

MODELS = Path(__file__).resolve().parents[2] / "models"


def test_evaluate_prints_the_table_and_writes_json(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LD3_CACHE_DIR", str(tmp_path))
    out = tmp_path / "t.json"
    rc = main(["evaluate", "--model", "ddpm-digits", "--solver", "dpmpp_2m", "--nfe", "3", "--n", "8", "--metrics", "fd_digits",
               "--teacher", "unipc", "4", "logsnr", "--model-root", str(MODELS), "--json", str(out)])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "| time_uniform |" in printed and "LPIPS" not in printed
    assert {r["name"] for r in json.loads(out.read_text())["rows"]} == {*HEURISTICS, "teacher"}


def test_evaluate_rejects_an_unknown_model(capsys):
    assert main(["evaluate", "--model", "nope", "--solver", "unipc", "--nfe", "4", "--model-root", str(MODELS)]) == 2
    assert "--model: unknown key 'nope'" in capsys.readouterr().err
