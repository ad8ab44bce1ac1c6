"""Analytic models: Gaussian mixtures whose exact denoiser is known in closed form.

Data p_0 = sum_k w_k N(mu_k, s_k^2 I) in R^D. Under x_t = alpha x_0 + sigma eps the marginal
is sum_k w_k N(alpha mu_k, (alpha^2 s_k^2 + sigma^2) I) and the posterior mean is

    E[x_0 | x_t] = sum_k r_k(x_t) [mu_k + alpha s_k^2 / (alpha^2 s_k^2 + sigma^2) (x_t - alpha mu_k)],

with responsibilities r_k. That is the exact denoiser for every schedule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from .schedules import DTYPE, NoiseSchedule


@dataclass(eq=False)
class GaussianMixture:
    means: Tensor  # (K, D)
    stds: Tensor  # (K,)
    weights: Tensor  # (K,), sums to 1
    sample_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        self.means = torch.as_tensor(self.means, dtype=DTYPE)
        k, d = self.means.shape
        self.stds = torch.as_tensor(self.stds, dtype=DTYPE).expand(k).clone()
        self.weights = torch.as_tensor(self.weights, dtype=DTYPE).expand(k).clone()
        self.weights = self.weights / self.weights.sum()
        self.sample_shape = tuple(self.sample_shape) or (d,)
        if math.prod(self.sample_shape) != d:
            raise ValueError(f"sample_shape {self.sample_shape} does not hold {d} values")
        if bool((self.stds <= 0).any()):
            raise ValueError("component standard deviations must be positive")

    def _on(self, device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
        """(means, variances, weights) on ``device``, copied once per device."""
        cache = self.__dict__.setdefault("_device_cache", {})
        if device not in cache:
            cache[device] = (self.means.to(device), self.stds.to(device) ** 2, self.weights.to(device))
        return cache[device]

    @property
    def dim(self) -> int:
        return self.means.shape[1]

    def posterior_mean(self, x: Tensor, alpha: Tensor, sigma: Tensor) -> Tensor:
        """E[x_0 | x_t = x]; ``alpha``/``sigma`` are () or (B,). Computed in float64."""
        b = x.shape[0]
        xf = x.reshape(b, -1).to(DTYPE)
        mu, s2, w = self._on(x.device)
        a = alpha.to(DTYPE).reshape(-1, 1)  # (B or 1, 1)
        sg = sigma.to(DTYPE).reshape(-1, 1)
        var = a**2 * s2 + sg**2  # (B|1, K)
        diff = xf[:, None, :] - a[:, :, None] * mu[None]  # (B, K, D)
        sq = (diff**2).sum(-1)  # (B, K)
        logr = torch.log(w) - 0.5 * self.dim * torch.log(var) - 0.5 * sq / var
        r = torch.softmax(logr, dim=1)
        comp = mu[None] + (a * s2 / var)[:, :, None] * diff  # (B, K, D)
        x0 = (r[:, :, None] * comp).sum(1)
        return x0.to(x.dtype).reshape(x.shape)

    def sample(self, n: int, generator: torch.Generator) -> Tensor:
        """Exact samples from p_0 (float64, shape (n, *sample_shape))."""
        k = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        z = torch.randn(n, self.dim, generator=generator, dtype=DTYPE)
        return (self.means[k] + self.stds[k, None] * z).reshape(n, *self.sample_shape)

    def nearest_mode_distance(self, x: Tensor) -> Tensor:
        """Distance to the nearest mean in units of that component's std (per sample)."""
        xf = x.reshape(x.shape[0], -1).to(DTYPE)
        d = torch.cdist(xf, self.means.to(xf.device)) / self.stds.to(xf.device)[None]
        return d.min(dim=1).values


class AnalyticDenoiser:
    """The exact denoiser of a ``GaussianMixture`` under ``schedule`` (the denoiser contract)."""

    def __init__(self, mixture: GaussianMixture, schedule: NoiseSchedule) -> None:
        self.mixture, self.schedule = mixture, schedule

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return self.mixture.posterior_mean(x, self.schedule.alpha(t), self.schedule.sigma(t))


class ClassConditionalDenoiser:
    """A conditional analytic model: class c's data is ``mixtures[c]``; ``bind(labels)`` gives the
    exact denoiser of a batch whose sample i has class ``labels[i]`` (the conditional contract)."""

    def __init__(self, mixtures: list[GaussianMixture], schedule: NoiseSchedule) -> None:
        self.mixtures, self.schedule = list(mixtures), schedule

    def bind(self, cond: Tensor) -> "_LabelledBatch":
        if cond.ndim != 1 or cond.dtype.is_floating_point:
            raise ValueError(f"class labels must be an integer tensor of shape (B,), got {cond.dtype} {tuple(cond.shape)}")
        if bool((cond < 0).any()) or bool((cond >= len(self.mixtures)).any()):
            raise ValueError(f"class labels must lie in 0..{len(self.mixtures) - 1}")
        return _LabelledBatch(self, cond)


class _LabelledBatch:
    def __init__(self, model: ClassConditionalDenoiser, labels: Tensor) -> None:
        self.model, self.labels, self.schedule = model, labels, model.schedule

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if x.shape[0] != self.labels.shape[0]:
            raise ValueError(f"a batch of {x.shape[0]} samples for {self.labels.shape[0]} labels")
        alpha, sigma = self.schedule.alpha(t), self.schedule.sigma(t)
        out = torch.empty_like(x)
        for c in self.labels.unique().tolist():
            m = self.labels == c
            a, s = (alpha[m], sigma[m]) if alpha.ndim else (alpha, sigma)
            out[m] = self.model.mixtures[c].posterior_mean(x[m], a, s)
        return out


def grid_mixture(dim: int = 2, per_axis: int = 3, spacing: float = 1.0, std: float = 0.05, axes: int = 2) -> GaussianMixture:
    """Tight, well-separated modes on a grid in the first ``axes`` coordinates of R^dim."""
    coords = torch.linspace(-spacing, spacing, per_axis, dtype=DTYPE)
    grid = torch.cartesian_prod(*[coords] * axes).reshape(-1, axes)
    means = torch.zeros(grid.shape[0], dim, dtype=DTYPE)
    means[:, :axes] = grid
    return GaussianMixture(means, torch.full((grid.shape[0],), std, dtype=DTYPE), torch.ones(grid.shape[0]))


def random_mixture(dim: int, k: int, seed: int, scale: float = 1.0, std: float = 0.1) -> GaussianMixture:
    """K modes drawn N(0, scale^2 I / dim) * sqrt(dim): separated in high dimension."""
    g = torch.Generator().manual_seed(seed)
    means = torch.randn(k, dim, generator=g, dtype=DTYPE) * scale
    weights = 0.5 + torch.rand(k, generator=g, dtype=DTYPE)
    return GaussianMixture(means, torch.full((k,), std, dtype=DTYPE), weights)


BUILTIN_MIXTURES = {
    "gmm2d": lambda: grid_mixture(dim=2, per_axis=3, spacing=1.0, std=0.05),
    "gmm64": lambda: random_mixture(dim=64, k=8, seed=0, scale=0.5, std=0.05),
}
