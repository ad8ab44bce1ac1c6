import pytest
import torch

from ld3core.guard import fd_difference, mean_sem, verdict
from ld3core.metrics import frechet_distance


def _ref(n=300, d=4, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_mean_sem_of_a_known_sample():
    m = mean_sem(torch.tensor([1.0, 2.0, 3.0, 4.0]))
    assert m["mean"] == 2.5 and m["sem"] == pytest.approx(torch.tensor([1.0, 2, 3, 4]).std().item() / 2)
    assert mean_sem(torch.tensor([5.0])) == {"mean": 5.0, "sem": 0.0}


def test_fd_difference_is_the_difference_of_the_two_distances_with_a_bootstrap_spread():
    ref = _ref()
    a, b = ref + 0.01 * _ref(seed=1), ref + 1.0
    d = fd_difference(a, b, ref, seed=3)
    assert d["fd_a"] == pytest.approx(frechet_distance(a, ref)) and d["fd_b"] == pytest.approx(frechet_distance(b, ref))
    assert d["mean"] == pytest.approx(d["fd_a"] - d["fd_b"]) and d["mean"] < -3.5  # the mean shift alone: 4 * 1^2
    assert 0 < d["sd"] < 1
    assert fd_difference(a, b, ref, seed=3) == d  # reproducible from its seed


def test_fd_difference_needs_one_row_per_pair_in_every_set():
    ref = _ref()
    with pytest.raises(ValueError, match="features"):
        fd_difference(ref[:-1], ref, ref)


def test_a_clearly_closer_schedule_with_the_teacher_s_distribution_is_served():
    ref = _ref()
    loss_best = torch.full((300,), 0.05) + 0.01 * _ref(300, 1, 2).squeeze(1).float()
    v = verdict(loss_best - 0.02, loss_best, 1.645, features=(ref + 0.01 * _ref(seed=4), ref + 0.3 * _ref(seed=5), ref))
    assert v.serve_ld3 and v.fd["mean"] < 0 and "FD to the teacher" in v.reason


def test_a_schedule_not_closer_beyond_noise_is_refused():
    loss_best = 0.05 + 0.01 * _ref(300, 1, 2).squeeze(1)
    noise = _ref(300, 1, 3).squeeze(1)
    noise = 0.05 * (noise - noise.mean())  # mean difference exactly -0.001, sem ~0.003
    v = verdict(loss_best - 0.001 + noise, loss_best, 1.645)
    assert not v.serve_ld3 and v.reason.startswith("not closer") and v.loss["mean"] == pytest.approx(-0.001)
    # The same figures with the guard overridden (z = 0): the point estimate decides.
    assert verdict(loss_best - 0.001 + noise, loss_best, 0.0).serve_ld3


def test_a_closer_schedule_whose_samples_collapse_is_refused():
    # Sample by sample nearer the teacher (each LD3 sample is the teacher's, shrunk towards the
    # mean), but the spread is gone: the distribution check sees what the per-pair loss cannot.
    ref = _ref()
    loss_best = torch.full((300,), 0.05, dtype=torch.float64)
    v = verdict(loss_best - 0.01, loss_best, 1.645, features=(0.3 * ref, ref + 0.05 * _ref(seed=6), ref))
    assert not v.serve_ld3 and "distribution" in v.reason and v.fd["mean"] > 0


def test_without_features_the_verdict_says_the_distribution_was_not_checked():
    loss_best = torch.full((50,), 0.05, dtype=torch.float64)
    v = verdict(loss_best - 0.01 - 0.001 * _ref(50, 1, 7).squeeze(1), loss_best, 1.645)
    assert v.serve_ld3 and v.fd is None and "no distribution check" in v.reason
    assert v.to_dict()["fd"] is None
