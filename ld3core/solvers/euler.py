"""Euler: the first-order exponential integrator (DDIM, Song et al. 2021).

In the data-prediction form x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) D, h = lambda_t - lambda_s.
For EDM (alpha = 1) and rectified flow this is exactly plain Euler in sigma; for any
schedule it is Euler on y = x/alpha in sigma/alpha (what k-diffusion's and diffusers' Euler do).
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..denoisers import Denoiser
from ..schedules import NoiseSchedule
from ._common import DeviceChecks, Evaluations, bcast, check_times, solve


def euler(denoiser: Denoiser, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None) -> Tensor:
    """N steps, N network evaluations. Returns x at t_steps[-1] (a final 0: the data prediction)."""
    return solve(euler_steps, denoiser, x, t_steps, t_model)


def euler_steps(sch: NoiseSchedule, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None, *,
                on_device: DeviceChecks | None = None) -> Evaluations:
    """``euler`` as its network evaluations (``_common.Evaluations``)."""
    t_model, to_zero, _ = check_times(x, t_steps, t_model, sch, on_device)
    n = t_steps.shape[0] - 1
    for i in range(n):
        s, t = t_steps[i], t_steps[i + 1]
        d = yield x, t_model[i]
        if to_zero and i == n - 1:
            return d  # DDIM step onto sigma = 0: the data prediction (see ld3core.solvers)
        # DDIM step (data prediction).
        h = sch.lam(t) - sch.lam(s)
        x = bcast(sch.sigma(t) / sch.sigma(s), x) * x - bcast(sch.alpha(t) * torch.expm1(-h), x) * d
    return x
