"""What the tests of the training loop share (test_train, test_graphs): the analytic 2-D mixture,
its teacher, a small configuration and two starts; the pairs themselves are conftest fixtures."""

import torch

from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser, ClassConditionalDenoiser, grid_mixture
from ld3core.config import LD3Config
from ld3core.heuristics import heuristic
from ld3core.schedules import NoiseSchedule, VPLinear
from ld3core.teacher import TeacherSpec

SCH = VPLinear()
DEN = AnalyticDenoiser(BUILTIN_MIXTURES["gmm2d"](), SCH)
TEACHER = TeacherSpec("euler", 300, "logsnr")


def l2(a, b):
    return ((a - b) ** 2).flatten(1).sum(1)


def small_cfg(**kw):
    base = dict(solver="euler", nfe=4, loss="l2", phase1_epochs=1, phase2_epochs=2, val_every=2, lr_xi=2e-2)
    return LD3Config(**{**base, **kw})


def starts(cfg, names=("time_quadratic", "logsnr"), schedule: NoiseSchedule = SCH):
    return torch.stack([heuristic(h, schedule, cfg.n_steps) for h in names])


def class_model():
    return ClassConditionalDenoiser([grid_mixture(dim=2, per_axis=2, spacing=s) for s in (0.5, 1.0, 2.0)], SCH)
