"""Noise schedules x_t = alpha_t x_0 + sigma_t eps, with t <-> lambda <-> sigma maps.

Every schedule is a time interval [t_min, T] with a strictly decreasing log-SNR
lambda_t = log(alpha_t / sigma_t). Time arithmetic runs in float64 (a solver casts the
coefficients to the sample's dtype at the point of use); every map is differentiable in t.

Families (see LD3_SPEC.md, "Objects"):
- ``VPDiscrete``: from a model's ``alphas_cumprod``; log alpha piecewise linear in t,
  T = 1, t_min = 1/N (DPM-Solver's discrete-time convention, t = (k+1)/N <-> index k).
- ``VPLinear`` (beta 0.1..20) and ``VPCosine`` (Nichol & Dhariwal).
- ``EDM`` (variance exploding: alpha = 1, sigma = t, T = 80, t_min = 0.002).
- ``RectifiedFlow`` (alpha = 1 - t, sigma = t), the schedule family of SD3/Flux.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

DTYPE = torch.float64


def as_time(t: Tensor | float) -> Tensor:
    """A float64 tensor view of a time (keeps the autograd graph)."""
    return t.to(DTYPE) if isinstance(t, Tensor) else torch.tensor(t, dtype=DTYPE)


def interp(x: Tensor, xp: Tensor, fp: Tensor) -> Tensor:
    """Piecewise-linear interpolation, differentiable in ``x``; ``xp`` increasing.

    Outside [xp[0], xp[-1]] the end segments are extended linearly.
    """
    idx = torch.searchsorted(xp, x.detach().contiguous()).clamp(1, len(xp) - 1)
    x0, x1, f0, f1 = xp[idx - 1], xp[idx], fp[idx - 1], fp[idx]
    return f0 + (f1 - f0) * (x - x0) / (x1 - x0)


class NoiseSchedule(ABC):
    """alpha_t, sigma_t and lambda_t on [t_min, T]; subclasses give log alpha and the inverse."""

    name: str
    T: float
    t_min: float

    @abstractmethod
    def log_alpha(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def log_sigma(self, t: Tensor) -> Tensor: ...

    @abstractmethod
    def t_from_lambda(self, lam: Tensor) -> Tensor:
        """Inverse of ``lam``: the time at which log(alpha/sigma) equals ``lam``."""

    def alpha(self, t: Tensor | float) -> Tensor:
        return torch.exp(self.log_alpha(as_time(t)))

    def sigma(self, t: Tensor | float) -> Tensor:
        return torch.exp(self.log_sigma(as_time(t)))

    def lam(self, t: Tensor | float) -> Tensor:
        t = as_time(t)
        return self.log_alpha(t) - self.log_sigma(t)

    def edm_sigma(self, t: Tensor | float) -> Tensor:
        """sigma_t / alpha_t: the noise level of x_t / alpha_t (EDM's sigma)."""
        return torch.exp(-self.lam(t))

    def t_from_edm_sigma(self, s: Tensor) -> Tensor:
        return self.t_from_lambda(-torch.log(as_time(s)))

    def alpha_of_sigma(self, s: Tensor) -> Tensor:
        """alpha as a function of sigma: sqrt(1 - sigma^2) for the VP family (overridden)."""
        return torch.sqrt(1.0 - s**2)

    def t_from_sigma(self, s: Tensor | float) -> Tensor:
        """Inverse of sigma_t (sigma increases with t in every schedule here)."""
        s = as_time(s)
        return self.t_from_lambda(torch.log(self.alpha_of_sigma(s)) - torch.log(s))

    @property
    def sigma_T(self) -> float:
        """Standard deviation of the prior x_T ~ N(0, sigma_T^2 I)."""
        return float(self.sigma(self.T))

    def model_time(self, t: Tensor) -> Tensor:
        """The time value a network of this schedule is conditioned on (identity by default)."""
        return t

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """A JSON-serialisable description from which ``schedule_from_config`` rebuilds it."""


@dataclass(eq=False)
class VPDiscrete(NoiseSchedule):
    """Discrete-time VP (DDPM/LDM/Stable Diffusion) from ``alphas_cumprod`` of length N."""

    alphas_cumprod: Tensor
    name: str = field(default="vp_discrete", init=False)

    def __post_init__(self) -> None:
        ac = torch.as_tensor(self.alphas_cumprod, dtype=DTYPE).flatten()
        if ac.numel() < 2 or not bool(torch.all(ac[1:] < ac[:-1])) or not bool(((ac > 0) & (ac < 1)).all()):
            raise ValueError("alphas_cumprod must be strictly decreasing values in (0, 1)")
        self.alphas_cumprod = ac
        n = ac.numel()
        self.n_train = n
        self.T, self.t_min = 1.0, 1.0 / n
        self._t = torch.arange(1, n + 1, dtype=DTYPE) / n
        self._log_alpha = 0.5 * torch.log(ac)
        self._tables: dict[torch.device, tuple[Tensor, Tensor]] = {}

    @classmethod
    def from_betas(cls, betas: Tensor) -> "VPDiscrete":
        return cls(torch.cumprod(1.0 - torch.as_tensor(betas, dtype=DTYPE), 0))

    @classmethod
    def scaled_linear(cls, n: int = 1000, beta_start: float = 0.00085, beta_end: float = 0.012) -> "VPDiscrete":
        """Stable Diffusion's betas."""
        return cls.from_betas(torch.linspace(beta_start**0.5, beta_end**0.5, n, dtype=DTYPE) ** 2)

    @classmethod
    def linear(cls, n: int = 1000, beta_start: float = 1e-4, beta_end: float = 0.02) -> "VPDiscrete":
        """DDPM's betas."""
        return cls.from_betas(torch.linspace(beta_start, beta_end, n, dtype=DTYPE))

    def _table(self, device: torch.device) -> tuple[Tensor, Tensor]:
        """(t, log alpha) on ``device``, copied once per device rather than on every call."""
        if device not in self._tables:
            self._tables[device] = (self._t.to(device), self._log_alpha.to(device))
        return self._tables[device]

    def log_alpha(self, t: Tensor) -> Tensor:
        t = as_time(t)
        return interp(t, *self._table(t.device))

    def log_sigma(self, t: Tensor) -> Tensor:
        return 0.5 * torch.log(-torch.expm1(2.0 * self.log_alpha(t)))

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(as_time(lam)), -2.0 * as_time(lam))
        t, la = self._table(log_alpha.device)
        return interp(log_alpha, la.flip(0), t.flip(0))

    def model_time(self, t: Tensor) -> Tensor:
        """The (fractional) training-step index k for t = (k + 1) / N."""
        return (t - self.t_min) * self.n_train

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "alphas_cumprod": self.alphas_cumprod.tolist()}


@dataclass(eq=False)
class VPLinear(NoiseSchedule):
    """Continuous VP with linear beta(t) (score-SDE / DPM-Solver)."""

    beta_min: float = 0.1
    beta_max: float = 20.0
    T: float = 1.0
    t_min: float = 1e-3
    name: str = field(default="vp_linear", init=False)

    def log_alpha(self, t: Tensor) -> Tensor:
        t = as_time(t)
        return -0.25 * t**2 * (self.beta_max - self.beta_min) - 0.5 * t * self.beta_min

    def log_sigma(self, t: Tensor) -> Tensor:
        return 0.5 * torch.log(-torch.expm1(2.0 * self.log_alpha(t)))

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        lam = as_time(lam)
        tmp = 2.0 * (self.beta_max - self.beta_min) * torch.logaddexp(-2.0 * lam, torch.zeros_like(lam))
        delta = self.beta_min**2 + tmp
        return tmp / (torch.sqrt(delta) + self.beta_min) / (self.beta_max - self.beta_min)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "beta_min": self.beta_min, "beta_max": self.beta_max, "T": self.T, "t_min": self.t_min}


@dataclass(eq=False)
class VPCosine(NoiseSchedule):
    """Cosine VP schedule (Nichol & Dhariwal); T = 0.9946 keeps lambda_T finite (DPM-Solver)."""

    s: float = 0.008
    T: float = 0.9946
    t_min: float = 1e-3
    name: str = field(default="vp_cosine", init=False)

    def _angle(self, t: Tensor) -> Tensor:
        return (t + self.s) / (1.0 + self.s) * (math.pi / 2.0)

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.log(torch.cos(self._angle(as_time(t)))) - math.log(math.cos(self.s / (1.0 + self.s) * math.pi / 2.0))

    def log_sigma(self, t: Tensor) -> Tensor:
        return 0.5 * torch.log(-torch.expm1(2.0 * self.log_alpha(t)))

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        lam = as_time(lam)
        log_alpha = -0.5 * torch.logaddexp(torch.zeros_like(lam), -2.0 * lam)
        c0 = math.log(math.cos(self.s / (1.0 + self.s) * math.pi / 2.0))
        return torch.arccos(torch.exp(log_alpha + c0)) * 2.0 * (1.0 + self.s) / math.pi - self.s

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "s": self.s, "T": self.T, "t_min": self.t_min}


@dataclass(eq=False)
class EDM(NoiseSchedule):
    """Variance exploding in EDM's parameterization: alpha = 1, sigma = t."""

    T: float = 80.0
    t_min: float = 0.002
    name: str = field(default="edm", init=False)

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.zeros_like(as_time(t))

    def log_sigma(self, t: Tensor) -> Tensor:
        return torch.log(as_time(t))

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        return torch.exp(-as_time(lam))

    def alpha_of_sigma(self, s: Tensor) -> Tensor:
        return torch.ones_like(s)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "T": self.T, "t_min": self.t_min}


@dataclass(eq=False)
class RectifiedFlow(NoiseSchedule):
    """Rectified flow / flow matching: alpha = 1 - t, sigma = t.

    T = 0.999 by default (lambda_1 = -inf; diffusers' flow sigmas start at 1 - 1/1000 too).
    """

    T: float = 0.999
    t_min: float = 1e-3
    name: str = field(default="flow", init=False)

    def log_alpha(self, t: Tensor) -> Tensor:
        return torch.log1p(-as_time(t))

    def log_sigma(self, t: Tensor) -> Tensor:
        return torch.log(as_time(t))

    def t_from_lambda(self, lam: Tensor) -> Tensor:
        return torch.sigmoid(-as_time(lam))

    def alpha_of_sigma(self, s: Tensor) -> Tensor:
        return 1.0 - s

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "T": self.T, "t_min": self.t_min}


SCHEDULES: dict[str, type[NoiseSchedule]] = {
    "vp_discrete": VPDiscrete,
    "vp_linear": VPLinear,
    "vp_cosine": VPCosine,
    "edm": EDM,
    "flow": RectifiedFlow,
}


def schedule_from_config(cfg: dict[str, Any]) -> NoiseSchedule:
    """Rebuild a schedule from ``NoiseSchedule.config()``."""
    cfg = dict(cfg)
    name = cfg.pop("name", None)
    if name not in SCHEDULES:
        raise ValueError(f"unknown noise schedule {name!r}; known: {sorted(SCHEDULES)}")
    if name == "vp_discrete":
        return VPDiscrete(torch.tensor(cfg["alphas_cumprod"], dtype=DTYPE))
    return SCHEDULES[name](**cfg)
