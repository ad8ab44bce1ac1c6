import torch

from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser
from ld3core.config import TeacherSpec
from ld3core.schedules import EDM
from ld3core.teacher import prior_noise, teacher_pairs


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


def _per_class_model():
    from ld3core.analytic import ClassConditionalDenoiser, grid_mixture

    return ClassConditionalDenoiser([grid_mixture(dim=2, per_axis=2, spacing=s) for s in (0.5, 1.0, 2.0)], EDM())


def test_conditional_teacher_uses_each_samples_own_condition():
    model = _per_class_model()
    spec = TeacherSpec("euler", 40, "edm")
    labels = torch.tensor([0, 1, 2, 0, 2, 1, 1])
    many = teacher_pairs(model, spec, range(7), (2,), batch_size=3, dtype=torch.float64, cond=labels)
    assert torch.equal(many.cond, labels)
    for i in range(7):
        alone = teacher_pairs(model, spec, [i], (2,), dtype=torch.float64, cond=labels[i : i + 1])
        torch.testing.assert_close(many.x_0[i : i + 1], alone.x_0, rtol=0, atol=1e-12)
    other = teacher_pairs(model, spec, range(7), (2,), dtype=torch.float64, cond=(labels + 1) % 3)
    assert (other.x_0 - many.x_0).norm(dim=1).min() > 0.1  # the labels do change the outputs


def test_conditional_teacher_refuses_wrong_or_missing_conditions():
    import pytest

    from ld3core.teacher import Pairs

    model, spec = _per_class_model(), TeacherSpec("euler", 4, "edm")
    with pytest.raises(ValueError, match="2 conditions for 3 seeds"):
        teacher_pairs(model, spec, range(3), (2,), cond=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="needs per-sample conditions"):
        teacher_pairs(model, spec, range(3), (2,))
    with pytest.raises(ValueError, match="1 conditions for 2 samples"):
        Pairs(torch.zeros(2, 2), torch.zeros(2, 2), torch.tensor([0]))
