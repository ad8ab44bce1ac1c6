import subprocess
import sys
from dataclasses import fields

import pytest

from ld3core.config import LATENT_RECIPE, OPTIONS, JobConfig, LD3Config, TeacherSpec, job_config


def test_defaults_are_the_papers_pixel_recipe():
    c = LD3Config()
    assert (c.lr_xi, c.lr_xic, c.lr_x, c.momentum, c.clip) == (5e-3, 0.1, 12.0, 0.9, 1.0)
    assert (c.phase1_epochs, c.phase2_epochs, c.batch_size, c.gamma) == (2, 5, 2, 0.001)
    assert (c.patience, c.factor, c.min_lr_xi, c.min_lr_xic) == (5, 0.8, 5e-5, 1e-6)
    lat = LD3Config.latent()
    assert (lat.lr_xi, lat.lr_xic, lat.phase2_epochs) == (1e-3, 0.001, 3)
    assert LD3Config.latent(lr_xi=0.01, nfe=4) == LD3Config(lr_xi=0.01, lr_xic=0.001, phase2_epochs=3, nfe=4)
    assert c.restore is True and c.accept_moves is False


@pytest.mark.parametrize("field,value,match", [
    ("solver", "rk45", "solver"), ("nfe", 0, "nfe"), ("nfe", 1, "nfe"), ("loss", "ssim", "loss"),
    ("mode", "sigma", "mode"), ("batch_size", 0, "batch_size"), ("factor", 1.5, "factor"),
    ("lr_xi", -1.0, "lr_xi"), ("select_on", "best", "select_on"), ("final", "t_min", "final"),
])
def test_bad_values_name_the_field(field, value, match):
    with pytest.raises(ValueError, match=match):
        LD3Config(**{field: value})


def test_heun_needs_two_steps():
    with pytest.raises(ValueError, match="nfe"):
        LD3Config(solver="heun", nfe=2)
    assert LD3Config(solver="heun", nfe=5).n_steps == 3


def test_round_trip_and_unknown_options():
    c = LD3Config(solver="dpmpp_2m", nfe=6, mode="lambda")
    assert LD3Config.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown LD3 option"):
        LD3Config.from_dict({"nfe": 4, "learning_rate": 1})
    j = JobConfig(ld3=c, n_test=7, heuristics=("edm", "logsnr"))
    assert JobConfig.from_dict(j.to_dict()) == j


def test_job_splits_are_disjoint_and_seeded():
    s = JobConfig().seeds()
    assert not set(s["train"]) & set(s["val"]) and not set(s["val"]) & set(s["test"])
    assert JobConfig(ld3=LD3Config(seed=1)).seeds()["train"] != s["train"]
    with pytest.raises(ValueError, match="heuristics"):
        JobConfig(heuristics=("karras",))
    with pytest.raises(ValueError, match="n_train"):
        JobConfig(n_train=1)


def test_the_final_step_rule_defaults_to_sigma_min_for_every_job():
    """Today's rule stays the default (LD3 results measured with it stay comparable); a config
    stored before the rule existed reads as sigma_min."""
    assert LD3Config().final == "sigma_min" and LD3Config.latent().final == "sigma_min"
    assert JobConfig().ld3.final == "sigma_min"
    old = LD3Config().to_dict()
    del old["final"]
    assert LD3Config.from_dict(old) == LD3Config()
    assert LD3Config(final="zero").final == "zero"


def test_the_module_imports_no_torch():
    """The API reads the options and their defaults from here without loading the library."""
    code = "import sys, ld3core.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_every_field_is_one_option_and_back():
    """OPTIONS names every field of the three configs once (the job's solver and nfe aside)."""
    reached = {(o.section, o.field) for o in OPTIONS.values()}
    assert len(reached) == len(OPTIONS)
    assert reached == ({("ld3", f.name) for f in fields(LD3Config) if f.name not in ("solver", "nfe")}
                       | {("teacher", f.name) for f in fields(TeacherSpec)}
                       | {("job", f.name) for f in fields(JobConfig) if f.name not in ("ld3", "teacher")})
    assert OPTIONS["teacher_nfe"].field == "nfe" and OPTIONS["eval_batch_size"].field == "batch_size"
    assert {name for name, o in OPTIONS.items() if o.by_recipe} == set(LATENT_RECIPE)


def test_job_config_takes_the_options_given_and_the_defaults_for_the_rest():
    assert job_config("heun", 5) == JobConfig(ld3=LD3Config(solver="heun", nfe=5))
    assert job_config("heun", 5, latent=True) == JobConfig(ld3=LD3Config.latent(solver="heun", nfe=5))
    cfg = job_config("euler", 4, {"teacher_nfe": 8, "eval_batch_size": 3, "batch_size": 4, "heuristics": ["edm"],
                                  "starts": 1, "lr_xi": None, "restore": False}, latent=True)
    assert (cfg.teacher.nfe, cfg.batch_size, cfg.ld3.batch_size, cfg.heuristics) == (8, 3, 4, ("edm",))
    assert cfg.ld3.lr_xi == LATENT_RECIPE["lr_xi"] and cfg.ld3.restore is False  # None: the recipe's
    with pytest.raises(ValueError, match=r"unknown option\(s\): \['learning_rate'\]"):
        job_config("euler", 4, {"learning_rate": 1})
    with pytest.raises(ValueError, match="n_train"):
        job_config("euler", 4, {"n_train": 1})
