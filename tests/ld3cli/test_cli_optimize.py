"""``ld3 optimize`` and ``ld3 models``: a local LD3 job on the built-in models, every job option a flag."""

import json

import pytest

from ld3cli.main import main, parser
from ld3cli.optimize import job_config
from ld3core.config import OPTIONS, JobConfig, LD3Config, TeacherSpec
from ld3core.models import builtin_names, load_builtin

ARGS = ["optimize", "--model", "gmm2d-edm", "--solver", "euler", "--nfe", "4", "--teacher-solver", "euler",
        "--teacher-nfe", "100", "--n-train", "8", "--n-val", "8", "--n-test", "16", "--epochs", "1", "1", "--quiet"]


def test_optimize_prints_the_schedule_and_a_table(capsys):
    assert main(ARGS) == 0
    out = capsys.readouterr().out
    assert "learned t_steps: 80," in out
    for name in ("ld3", "logsnr", "edm", "time_uniform", "time_quadratic"):
        assert f"\n{name} " in out
    assert "<- returned" in out


def test_optimize_json_output(capsys, tmp_path):
    path = tmp_path / "r.json"
    assert main(ARGS + ["--json", "--out", str(path)]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d == json.loads(path.read_text())
    assert d["model"] == "gmm2d-edm" and len(d["learned_t_steps"]) == 5 and d["t_steps"][0] == 80.0
    assert d["source"] in ("ld3", "logsnr", "edm", "time_uniform", "time_quadratic")


def test_bad_input_is_a_clear_error(capsys):
    assert main(["optimize", "--model", "nope-edm"]) == 2
    assert "unknown built-in model" in capsys.readouterr().err
    assert main(["optimize", "--model", "gmm2d-edm", "--nfe", "1", "--quiet"]) == 2
    assert "nfe" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["optimize", "--solver", "rk4"])


def test_models_lists_every_builtin(capsys):
    assert main(["models"]) == 0
    names = capsys.readouterr().out.split()
    assert names == builtin_names() and "gmm64-flow" in names
    m = load_builtin("gmm64-vp")
    assert m.sample_shape == (64,) and m.default_loss == "l2"


def test_without_flags_a_job_has_the_configs_defaults_and_the_models_loss():
    args = parser().parse_args(["optimize"])
    assert job_config(args, default_loss="l2") == JobConfig(ld3=LD3Config(loss="l2"))


def test_every_job_option_is_a_flag():
    args = parser().parse_args(["optimize", "--solver", "euler", "--nfe", "4", "--teacher-nfe", "30", "--eval-batch-size",
                                 "8", "--no-restore", "--accept-moves", "--lr-xi", "0.02", "--heuristics", "edm", "logsnr",
                                 "--starts", "2", "--init", "edm", "--guard-z", "0", "--hard", "--epochs", "1", "3"])
    cfg = job_config(args, default_loss="l2")
    assert cfg.teacher == TeacherSpec(nfe=30) and (cfg.batch_size, cfg.heuristics, cfg.starts, cfg.init) == (8, ("edm", "logsnr"), 2, "edm")
    assert cfg.ld3 == LD3Config(solver="euler", nfe=4, loss="l2", restore=False, accept_moves=True, lr_xi=0.02, soft=False,
                                phase1_epochs=1, phase2_epochs=3)
    assert cfg.guard_z == 0
    flags = {s for a in parser()._subparsers._group_actions[0].choices["optimize"]._actions for s in a.option_strings}
    assert {"--" + name.replace("_", "-") for name in OPTIONS} <= flags
