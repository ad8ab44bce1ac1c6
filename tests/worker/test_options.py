"""worker.options: a stored job's options to ld3core's JobConfig (the recipe for unset ones) and conditioning."""

from __future__ import annotations

import pytest

from registry.schemas import JobOptions
from worker.options import conditioning, job_config


def test_job_config_carries_every_option_into_ld3core():
    opts = JobOptions(
        teacher_solver="heun", teacher_nfe=31, teacher_heuristic="edm", batch_size=3, n_train=33, n_val=7, n_test=9,
        heuristics=["edm", "logsnr"], starts=2, init="edm", guard_z=0.5, eval_batch_size=5, loss="l1", mode="lambda",
        decoupled=False, soft=False, gamma=0.004, phase1_epochs=3, phase2_epochs=4, lr_xi=0.02, lr_xic=0.03, lr_x=4.0,
        momentum=0.5, clip=2.0, patience=6, factor=0.7, min_lr_xi=1e-4, min_lr_xic=1e-5, val_every=3, select_on="soft",
        restore=False, accept_moves=True, remat=False, val_batch_size=11, seed=42,
    ).model_dump(mode="json")
    cfg = job_config("dpmpp_2m", 6, opts)
    ld3 = cfg.ld3
    assert (ld3.solver, ld3.nfe, ld3.loss, ld3.mode, ld3.decoupled, ld3.soft, ld3.gamma) == ("dpmpp_2m", 6, "l1", "lambda", False, False, 0.004)
    assert (ld3.batch_size, ld3.phase1_epochs, ld3.phase2_epochs, ld3.lr_xi, ld3.lr_xic, ld3.lr_x) == (3, 3, 4, 0.02, 0.03, 4.0)
    assert (ld3.momentum, ld3.clip, ld3.patience, ld3.factor, ld3.min_lr_xi, ld3.min_lr_xic) == (0.5, 2.0, 6, 0.7, 1e-4, 1e-5)
    assert (ld3.val_every, ld3.select_on, ld3.restore, ld3.accept_moves, ld3.remat) == (3, "soft", False, True, False)
    assert (ld3.val_batch_size, ld3.seed) == (11, 42)
    assert (cfg.teacher.solver, cfg.teacher.nfe, cfg.teacher.heuristic) == ("heun", 31, "edm")
    assert (cfg.n_train, cfg.n_val, cfg.n_test, cfg.starts, cfg.init, cfg.guard_z, cfg.batch_size) == (33, 7, 9, 2, "edm", 0.5, 5)
    assert cfg.heuristics == ("edm", "logsnr")


def test_job_config_fills_unset_learning_rates_with_the_pixel_or_latent_recipe():
    opts = JobOptions().model_dump(mode="json")
    pixel, latent = job_config("unipc", 5, opts).ld3, job_config("unipc", 5, opts, latent=True).ld3
    assert (pixel.lr_xi, pixel.lr_xic, pixel.phase2_epochs) == (5e-3, 0.1, 5)
    assert (latent.lr_xi, latent.lr_xic, latent.phase2_epochs) == (1e-3, 0.001, 3)


def test_job_config_refuses_an_unknown_stored_option():
    with pytest.raises(ValueError, match="bogus"):
        job_config("unipc", 5, {**JobOptions().model_dump(mode="json"), "bogus": 1})


def test_conditioning_is_the_guidance_prompts_and_labels_given():
    opts = JobOptions(guidance=2.0, class_labels=[1, 3]).model_dump(mode="json")
    assert conditioning(opts) == {"guidance": 2.0, "class_labels": [1, 3], "prompts": None}
    assert conditioning({}) == {"guidance": None, "class_labels": None, "prompts": None}
