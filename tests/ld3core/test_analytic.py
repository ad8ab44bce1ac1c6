"""Analytic Gaussian mixtures: the exact posterior mean, and exact samples."""

from __future__ import annotations

import math

import pytest
import torch

from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser, GaussianMixture, grid_mixture
from ld3core.schedules import DTYPE, VPLinear

MIXTURE = GaussianMixture(
    means=torch.tensor([[-1.0, 0.0, 0.5], [1.0, 0.5, 0.0], [0.0, -1.0, -0.5]]),
    stds=torch.tensor([0.5, 0.3, 0.4]),
    weights=torch.tensor([0.2, 0.3, 0.5]),
)


def _log_marginal(m: GaussianMixture, x: torch.Tensor, alpha: float, sigma: float) -> torch.Tensor:
    """log p_t(x) for x_t = alpha x_0 + sigma eps, per sample."""
    var = alpha**2 * m.stds**2 + sigma**2  # (K,)
    sq = ((x[:, None, :] - alpha * m.means[None]) ** 2).sum(-1)  # (B, K)
    logn = -0.5 * m.dim * torch.log(2 * math.pi * var) - 0.5 * sq / var
    return torch.logsumexp(torch.log(m.weights) + logn, dim=1)


@pytest.mark.parametrize(("alpha", "sigma"), [(1.0, 0.05), (0.8, 0.6), (0.3, 0.95), (1.0, 20.0)])
def test_posterior_mean_is_tweedie(alpha, sigma):
    """E[x0 | x] = (x + sigma^2 grad log p_t(x)) / alpha (Tweedie), from the log-density alone."""
    x = torch.randn(16, 3, generator=torch.Generator().manual_seed(0), dtype=DTYPE) * (alpha + sigma)
    xg = x.clone().requires_grad_(True)
    (score,) = torch.autograd.grad(_log_marginal(MIXTURE, xg, alpha, sigma).sum(), xg)
    tweedie = (x + sigma**2 * score) / alpha
    out = MIXTURE.posterior_mean(x, torch.tensor(alpha, dtype=DTYPE), torch.tensor(sigma, dtype=DTYPE))
    torch.testing.assert_close(out, tweedie, rtol=1e-10, atol=1e-10)


def test_posterior_mean_matches_importance_sampling():
    """Self-normalised importance sampling with the prior as proposal, within 5 standard errors."""
    g = torch.Generator().manual_seed(1)
    alpha, sigma = 0.8, 0.6
    x0 = MIXTURE.sample(200_000, g)
    x = torch.tensor([[0.5, 0.0, 0.0], [-1.0, 0.3, 0.2], [0.0, -0.8, -0.6]], dtype=DTYPE)
    logw = -0.5 * ((x[:, None, :] - alpha * x0[None]) ** 2).sum(-1) / sigma**2  # (B, M)
    w = torch.softmax(logw, dim=1)
    est = w @ x0
    ess = 1 / (w**2).sum(1, keepdim=True)
    post_sd = (w @ x0**2 - est**2).clamp(min=0).sqrt()
    exact = MIXTURE.posterior_mean(x, torch.tensor(alpha, dtype=DTYPE), torch.tensor(sigma, dtype=DTYPE))
    assert bool((ess > 1000).all())
    assert bool(((exact - est).abs() <= 5 * post_sd / ess.sqrt()).all()), (exact, est)


def test_single_gaussian_closed_form():
    """One component: the Gaussian posterior mean in precision form."""
    mu, s = torch.tensor([[0.3, -0.7]], dtype=DTYPE), 0.4
    m = GaussianMixture(mu, torch.tensor([s], dtype=DTYPE), torch.tensor([1.0]))
    x = torch.randn(5, 2, generator=torch.Generator().manual_seed(2), dtype=DTYPE)
    alpha, sigma = torch.tensor(0.6, dtype=DTYPE), torch.tensor(0.8, dtype=DTYPE)
    precision = 1 / s**2 + alpha**2 / sigma**2
    expected = (mu / s**2 + alpha * x / sigma**2) / precision
    torch.testing.assert_close(m.posterior_mean(x, alpha, sigma), expected, rtol=1e-12, atol=1e-12)


def test_per_sample_noise_levels_and_dtype():
    schedule = VPLinear()
    den = AnalyticDenoiser(MIXTURE, schedule)
    x = torch.randn(3, 3, generator=torch.Generator().manual_seed(3), dtype=DTYPE)
    t = torch.tensor([0.9, 0.5, 0.01], dtype=DTYPE)
    batched = den(x, t)
    single = torch.cat([den(x[i : i + 1], t[i]) for i in range(3)])
    torch.testing.assert_close(batched, single, rtol=1e-14, atol=1e-14)
    out32 = den(x.float(), t)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, batched.float(), rtol=1e-5, atol=1e-6)


def test_sample_shape_is_respected():
    m = GaussianMixture(torch.zeros(2, 12, dtype=DTYPE), torch.ones(2), torch.ones(2), sample_shape=(3, 2, 2))
    x = m.sample(4, torch.Generator().manual_seed(0))
    assert x.shape == (4, 3, 2, 2)
    assert m.posterior_mean(x, torch.tensor(0.5), torch.tensor(0.5)).shape == x.shape


def test_samples_have_mixture_mean_and_covariance():
    n = 200_000
    x = MIXTURE.sample(n, torch.Generator().manual_seed(4))
    w, mu, s2 = MIXTURE.weights, MIXTURE.means, MIXTURE.stds**2
    mean = w @ mu
    cov = (w * s2).sum() * torch.eye(3, dtype=DTYPE) + (w[:, None, None] * mu[:, :, None] * mu[:, None, :]).sum(0) - torch.outer(mean, mean)
    sd = cov.diagonal().sqrt()
    assert bool(((x.mean(0) - mean).abs() <= 5 * sd / math.sqrt(n)).all())
    # Each covariance entry within 5 standard errors, estimated from the sample's own fourth moments.
    xc = x - x.mean(0)
    prod = xc[:, :, None] * xc[:, None, :]
    se = prod.std(0) / math.sqrt(n)
    assert bool(((prod.mean(0) - cov).abs() <= 5 * se).all()), (prod.mean(0), cov)


def test_nearest_mode_distance():
    m = grid_mixture(dim=2, per_axis=3, spacing=1.0, std=0.05)
    x = torch.tensor([[1.0, 1.0], [0.1, 0.0], [0.5, 0.5]], dtype=DTYPE)
    torch.testing.assert_close(m.nearest_mode_distance(x), torch.tensor([0.0, 2.0, math.sqrt(0.5) / 0.05], dtype=DTYPE))


def test_builtin_mixtures_and_validation():
    for build in BUILTIN_MIXTURES.values():
        m = build()
        assert torch.isclose(m.weights.sum(), torch.tensor(1.0, dtype=DTYPE))
        assert m.sample(3, torch.Generator().manual_seed(0)).shape == (3, m.dim)
    with pytest.raises(ValueError):
        GaussianMixture(torch.zeros(1, 4), torch.ones(1), torch.ones(1), sample_shape=(3,))
    with pytest.raises(ValueError):
        GaussianMixture(torch.zeros(2, 4), torch.tensor([1.0, 0.0]), torch.ones(2))


def test_class_conditional_denoiser_is_each_class_mixture():
    from ld3core.analytic import ClassConditionalDenoiser

    sch = VPLinear()
    mixtures = [grid_mixture(dim=2, per_axis=2, spacing=s) for s in (0.5, 1.0, 2.0)]
    model = ClassConditionalDenoiser(mixtures, sch)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, generator=g, dtype=DTYPE)
    labels = torch.tensor([2, 0, 1, 2, 0])
    for t in (torch.tensor(0.4, dtype=DTYPE), torch.tensor([0.9, 0.5, 0.3, 0.2, 0.1], dtype=DTYPE)):
        out = model.bind(labels)(x, t)
        for i, c in enumerate(labels.tolist()):
            ti = t if t.ndim == 0 else t[i : i + 1]
            torch.testing.assert_close(out[i : i + 1], AnalyticDenoiser(mixtures[c], sch)(x[i : i + 1], ti), rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"labels must lie in 0\.\.2"):
        model.bind(torch.tensor([3]))
    with pytest.raises(ValueError, match="integer tensor"):
        model.bind(torch.tensor([0.5]))
