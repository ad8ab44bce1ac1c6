import torch

from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser
from ld3core.schedules import EDM
from ld3core.teacher import TeacherSpec, prior_noise, teacher_pairs


def test_noise_depends_only_on_the_seed():
    seeds = [11, 12, 13, 14, 15]
    a = prior_noise(seeds, (3, 4, 4), 80.0)
    b = prior_noise(seeds[2:4], (3, 4, 4), 80.0)
    assert torch.equal(a[2:4], b)
    assert not torch.equal(a[0], a[1])
    assert abs(float(a.std()) - 80.0) < 8.0


def test_teacher_pairs_identical_across_batch_sizes():
    den = AnalyticDenoiser(BUILTIN_MIXTURES["gmm2d"](), EDM())
    spec = TeacherSpec("euler", 40, "edm")
    one = teacher_pairs(den, spec, range(9), (2,), batch_size=1, dtype=torch.float64)
    many = teacher_pairs(den, spec, range(9), (2,), batch_size=4, dtype=torch.float64)
    assert torch.equal(one.x_T, many.x_T)
    assert torch.allclose(one.x_0, many.x_0, rtol=0, atol=1e-12)
    assert not one.x_0.requires_grad


def test_teacher_runs_without_autograd_even_when_enabled():
    den = AnalyticDenoiser(BUILTIN_MIXTURES["gmm2d"](), EDM())
    with torch.enable_grad():
        p = teacher_pairs(den, TeacherSpec("euler", 10, "edm"), [0, 1], (2,), dtype=torch.float64)
    assert p.x_0.grad_fn is None
