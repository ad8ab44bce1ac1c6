"""Sample-quality metrics for analytic and small-scale experiments. Pure functions; inputs are
torch tensors or numpy arrays of shape (n, ...) (flattened to (n, D)), computed in float64 on
the CPU; results are python floats.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy.stats import chi2
from torch import Tensor

from .analytic import GaussianMixture

Array = Tensor | np.ndarray
DTYPE = torch.float64


def gaussian_frechet_distance(mu1: Array, cov1: Array, mu2: Array, cov2: Array) -> float:
    """Squared Frechet (W2) distance between N(mu1, cov1) and N(mu2, cov2):
    |mu1 - mu2|^2 + tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2).

    The symmetric form replaces FID's sqrtm(S1 S2) (same trace): it needs only symmetric
    eigendecompositions, so no complex parts and no failures on singular covariances."""
    mu1, mu2 = _t(mu1).reshape(-1), _t(mu2).reshape(-1)
    s1, s2 = _sym(_t(cov1)), _sym(_t(cov2))
    r1 = _psd_sqrt(s1)
    cross = torch.linalg.eigvalsh(_sym(r1 @ s2 @ r1)).clamp_min(0).sqrt().sum()
    fd = (mu1 - mu2).square().sum() + torch.trace(s1) + torch.trace(s2) - 2 * cross
    return max(fd.item(), 0.0)  # >= 0 exactly; round-off can give -1e-16


def frechet_distance(x: Array, y: Array) -> float:
    """Frechet distance (FID's formula) between Gaussians fitted to two sample sets (sample means,
    unbiased covariances)."""
    x, y = _rows(x), _rows(y)
    if min(len(x), len(y)) < 2:
        raise ValueError("a covariance needs at least two samples per set")
    return gaussian_frechet_distance(x.mean(0), _cov(x), y.mean(0), _cov(y))


def sliced_wasserstein(x: Array, y: Array, n_projections: int = 256, generator: torch.Generator | None = None) -> float:
    """Sliced 2-Wasserstein distance sqrt(E_theta W2^2(theta.x, theta.y)), theta uniform on the
    sphere, estimated with ``n_projections`` directions drawn from ``generator`` (default: a
    generator seeded 0, so the value is reproducible). Each 1-D W2 compares quantile functions at
    levels (i + 1/2)/m, m = max(n_x, n_y), interpolating the smaller set's order statistics."""
    x, y = _rows(x), _rows(y)
    if x.shape[1] != y.shape[1]:
        raise ValueError(f"dimensions differ: {x.shape[1]} vs {y.shape[1]}")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    theta = torch.randn(x.shape[1], n_projections, generator=g, dtype=DTYPE)
    theta = theta / theta.norm(dim=0, keepdim=True)
    m = max(len(x), len(y))
    qx, qy = _quantiles((x @ theta).sort(0).values, m), _quantiles((y @ theta).sort(0).values, m)
    return (qx - qy).square().mean().sqrt().item()


def mode_radius(dim: int, mass: float = 0.999) -> float:
    """Radius, in component stds, holding ``mass`` of an isotropic Gaussian in R^dim:
    sqrt of the chi-square quantile with ``dim`` degrees of freedom."""
    return math.sqrt(chi2.ppf(mass, dim))


def off_mode_fraction(samples: Array, mixture: GaussianMixture, k: float | None = None) -> float:
    """Share of samples farther than ``k`` component stds from every mode
    (``GaussianMixture.nearest_mode_distance`` > k). Default k = ``mode_radius(D, 0.999)``: exact
    samples of well-separated modes give ~0.001 (at most 0.001 in expectation)."""
    k = mode_radius(mixture.dim) if k is None else k
    d = mixture.nearest_mode_distance(_rows(samples))
    return (d > k).to(DTYPE).mean().item()


def teacher_distance(x: Array, y: Array) -> float:
    """Mean over samples of the per-sample RMSE, ||x_i - y_i||_2 / sqrt(D): paired, dimension-free."""
    x, y = _rows(x), _rows(y)
    if x.shape != y.shape:
        raise ValueError(f"paired sample sets differ in shape: {tuple(x.shape)} vs {tuple(y.shape)}")
    return (x - y).square().mean(1).sqrt().mean().item()


def _t(a: Array) -> Tensor:
    return torch.as_tensor(a.detach() if isinstance(a, Tensor) else a).to(device="cpu", dtype=DTYPE)


def _rows(a: Array) -> Tensor:
    a = _t(a)
    return a.reshape(a.shape[0], -1)


def _sym(s: Tensor) -> Tensor:
    s = s.reshape(int(math.isqrt(s.numel())), -1)
    return (s + s.T) / 2


def _cov(x: Tensor) -> Tensor:
    xc = x - x.mean(0)
    return xc.T @ xc / (len(x) - 1)


def _psd_sqrt(s: Tensor) -> Tensor:
    # Negative eigenvalues of a PSD matrix are round-off; clamp them.
    w, v = torch.linalg.eigh(s)
    return (v * w.clamp_min(0).sqrt()) @ v.T


def _quantiles(sorted_vals: Tensor, m: int) -> Tensor:
    """Linear interpolation of the empirical quantile function at levels (i + 1/2)/m, i < m."""
    n = len(sorted_vals)
    pos = ((torch.arange(m, dtype=DTYPE) + 0.5) * n / m - 0.5).clamp(0, n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    w = (pos - lo)[:, None]
    return sorted_vals[lo] * (1 - w) + sorted_vals[hi] * w
