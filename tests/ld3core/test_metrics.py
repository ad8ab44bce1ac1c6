"""Sample-quality metrics (ld3core.metrics) against closed forms."""

import math

import numpy as np
import pytest
import scipy.linalg
import torch

from ld3core.analytic import BUILTIN_MIXTURES
from ld3core.metrics import (
    frechet_distance,
    gaussian_frechet_distance,
    mode_radius,
    off_mode_fraction,
    sliced_wasserstein,
    teacher_distance,
)

D64 = torch.float64


def gen(seed):
    return torch.Generator().manual_seed(seed)


def spd(d, seed):
    a = torch.randn(d, d, generator=gen(seed), dtype=D64)
    return a @ a.T / d + 0.1 * torch.eye(d, dtype=D64)


def test_gaussian_frechet_matches_scipy_sqrtm():
    d = 6
    mu1, mu2 = torch.randn(d, generator=gen(0), dtype=D64), torch.randn(d, generator=gen(1), dtype=D64)
    s1, s2 = spd(d, 2), spd(d, 3)
    cross = scipy.linalg.sqrtm(s1.numpy() @ s2.numpy()).real  # FID's formula
    want = float(((mu1 - mu2) ** 2).sum() + np.trace(s1.numpy() + s2.numpy() - 2 * cross))
    assert gaussian_frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-9)
    assert gaussian_frechet_distance(mu1.numpy(), s1.numpy(), mu1.numpy(), s1.numpy()) == pytest.approx(0, abs=1e-10)


def test_gaussian_frechet_diagonal_closed_form():
    a, b = torch.tensor([1.0, 4.0, 0.25], dtype=D64), torch.tensor([9.0, 1.0, 0.0], dtype=D64)  # b singular
    m = torch.tensor([1.0, -2.0, 0.5], dtype=D64)
    want = float((m**2).sum() + ((a.sqrt() - b.sqrt()) ** 2).sum())
    assert gaussian_frechet_distance(torch.zeros(3), torch.diag(a), m, torch.diag(b)) == pytest.approx(want, rel=1e-12)


def test_frechet_shift_of_identical_samples_is_squared_shift():
    z = torch.randn(2000, 5, generator=gen(4), dtype=D64)
    m = torch.tensor([0.5, -1.0, 0.0, 2.0, 0.1], dtype=D64)
    assert frechet_distance(z, z) == pytest.approx(0.0, abs=1e-10)
    assert frechet_distance(z, z + m) == pytest.approx(float(m @ m), rel=1e-10)


def test_frechet_samples_converge_to_analytic_value():
    d, n = 3, 200_000
    s1, s2, m = spd(d, 5), spd(d, 6), torch.tensor([1.0, 0.0, -1.0], dtype=D64)
    l1, l2 = torch.linalg.cholesky(s1), torch.linalg.cholesky(s2)
    x = torch.randn(n, d, generator=gen(7), dtype=D64) @ l1.T
    y = m + torch.randn(n, d, generator=gen(8), dtype=D64) @ l2.T
    want = gaussian_frechet_distance(torch.zeros(d), s1, m, s2)
    assert frechet_distance(x, y) == pytest.approx(want, rel=0.02)
    # Independent samples of N(0, I) vs N(m, I): |m|^2 up to O(D/n) noise.
    x, y = torch.randn(n, d, generator=gen(9), dtype=D64), m + torch.randn(n, d, generator=gen(10), dtype=D64)
    assert frechet_distance(x, y) == pytest.approx(2.0, abs=0.02)


def test_frechet_rank_deficient_covariances_are_finite():
    x, y = torch.randn(5, 20, generator=gen(11)), torch.randn(7, 20, generator=gen(12))
    assert math.isfinite(frechet_distance(x, y)) and frechet_distance(x, y) > 0
    with pytest.raises(ValueError):
        frechet_distance(x[:1], y)


def test_sliced_wasserstein_of_a_shift():
    d, p = 4, 4000
    x = torch.randn(500, d, generator=gen(13), dtype=D64)
    m = torch.tensor([1.0, 2.0, -2.0, 0.0], dtype=D64)
    sw = sliced_wasserstein(x, x + m, n_projections=p, generator=gen(14))
    # Exactly the RMS projected shift for these directions...
    theta = torch.randn(d, p, generator=gen(14), dtype=D64)
    theta = theta / theta.norm(dim=0)
    assert sw == pytest.approx(float((m @ theta).square().mean().sqrt()), rel=1e-10)
    # ... whose expectation over the sphere is |m|^2 / D.
    assert sw**2 == pytest.approx(float(m @ m) / d, rel=0.05)
    assert sliced_wasserstein(x, x, generator=gen(0)) == pytest.approx(0.0, abs=1e-12)


def test_sliced_wasserstein_unequal_sizes_and_symmetry():
    x = torch.randn(3000, 1, generator=gen(15), dtype=D64)
    y = 3.0 + torch.randn(5000, 1, generator=gen(16), dtype=D64)
    assert sliced_wasserstein(x, y, n_projections=8) == pytest.approx(3.0, abs=0.1)  # 1-D: W2 = 3
    assert sliced_wasserstein(x, y, generator=gen(1)) == pytest.approx(sliced_wasserstein(y, x, generator=gen(1)), rel=1e-12)
    assert sliced_wasserstein(x[:2000], x[2000:].numpy(), n_projections=8) < 0.1


def test_mode_radius():
    assert mode_radius(2) == pytest.approx(math.sqrt(-2 * math.log(1e-3)))  # chi2(2) is exponential
    assert mode_radius(64) > mode_radius(2)


@pytest.mark.parametrize("name,n", [("gmm2d", 400_000), ("gmm64", 100_000)])
def test_off_mode_fraction_on_exact_samples(name, n):
    gm = BUILTIN_MIXTURES[name]()
    frac = off_mode_fraction(gm.sample(n, gen(17)), gm)
    assert frac == pytest.approx(1e-3, abs=5 * math.sqrt(1e-3 / n))


def test_off_mode_fraction_on_midpoints():
    gm = BUILTIN_MIXTURES["gmm64"]()
    i, j = torch.triu_indices(len(gm.means), len(gm.means), offset=1)
    mid = (gm.means[i] + gm.means[j]) / 2
    assert off_mode_fraction(mid, gm) == 1.0
    assert off_mode_fraction(gm.means, gm) == 0.0
    assert off_mode_fraction(mid, gm, k=1e9) == 0.0


def test_teacher_distance_is_mean_rmse():
    x = torch.zeros(3, 2, 2, dtype=D64)
    y = x.clone()
    y[0] = 1.0
    y[1] = 2.0  # per-sample RMSE 1, 2, 0
    assert teacher_distance(x, y) == pytest.approx(1.0)
    assert teacher_distance(x.numpy(), x.numpy()) == 0.0
    with pytest.raises(ValueError):
        teacher_distance(x, y[:2])
