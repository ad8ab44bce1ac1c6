"""UniPC: multistep predictor UniP-p and corrector UniC-p, B(h) variants, data prediction
(Zhao et al. 2023, "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of Diffusion Models").

Both are one update x_s -> x_t with h = lambda_t - lambda_s, r_k = (lambda_{s_k} - lambda_s)/h:
    x_t = (sigma_t/sigma_s) x_s - alpha_t (e^{-h} - 1) D_s - alpha_t B(h) sum_k rho_k (D_k - D_s)/r_k,
where rho solves sum_k rho_k r_k^(i-1) = i! (-h) phi_{i+1}(-h) / B(h), i = 1..K, and
B(h) = -h (bh1) or e^{-h} - 1 (bh2). The predictor uses the p - 1 earlier points; the corrector
also the new point at t (r = 1), whose evaluation the next predictor reuses, so N steps cost N
evaluations; the last step is not corrected. Warm start min(order, i + 1); with
``lower_order_final`` the order is also at most N - i on every run (diffusers'
``UniPCMultistepScheduler`` and the reference code do this for any N, unlike DPM-Solver++).
A grid ending at 0 (sigma = 0) ends with UniP-1 onto the data prediction, with or without it.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..denoisers import Denoiser
from ..schedules import NoiseSchedule
from ._common import DeviceChecks, Evaluations, bcast, check_times, defined, fill, phi_tail, solve, step_order

VARIANTS = ("bh1", "bh2")


def _rhos(r: list[Tensor], b: list[Tensor]) -> list[Tensor]:
    """Solve sum_k rho_k r_k^(i-1) = b_i; a single unknown takes its h -> 0 limit 1/2 (as the reference code)."""
    if len(r) == 1:
        return [torch.full_like(r[0], 0.5)]
    vander = torch.stack([torch.stack([rk**i for rk in r], -1) for i in range(len(r))], -2)  # (..., K, K)
    return list(torch.linalg.solve_ex(vander, torch.stack(b, -1)).result.unbind(-1))  # solve_ex: no device sync


def _uni_update(x: Tensor, d_s: Tensor, lam_s: Tensor, lam_t: Tensor, sigma_ratio: Tensor, alpha_t: Tensor,
                prev: list[tuple[Tensor, Tensor]], variant: str, zero_steps: bool) -> Tensor:
    """x_s -> x_t from D_s and ``prev`` = [(lambda_k, D_k)], the other points the update uses;
    ``zero_steps``: the grid has zero-length steps (``_common.defined``)."""
    h = lam_t - lam_s
    z = -h
    x = bcast(sigma_ratio, x) * x - bcast(alpha_t * torch.expm1(z), x) * d_s
    if not prev:
        return x
    ok = defined(zero_steps, h, [lam_k - lam_s for lam_k, _ in prev])
    if ok is not None:  # a zero-length step here or in the history: first order there, stand-ins keep the rest finite
        h = torch.where(ok, h, 1.0)
        z = -h
    b_h = z if variant == "bh1" else torch.expm1(z)
    r = [fill(ok, (lam_k - lam_s) / h, -1.0 - k) for k, (lam_k, _) in enumerate(prev)]
    b = [g * math.factorial(k + 1) / b_h for k, g in enumerate(phi_tail(z, len(r)))]
    for rho_k, r_k, (_, d_k) in zip(_rhos(r, b), r, prev):
        x = x - bcast(fill(ok, alpha_t * b_h * rho_k / r_k, 0.0), x) * (d_k - d_s)
    return x


def unipc(denoiser: Denoiser, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None, *,
          order: int = 3, variant: str = "bh2", lower_order_final: bool = True) -> Tensor:
    """UniPC-p (Zhao et al. 2023), ``order`` p in 1..3, ``variant`` "bh1" or "bh2".

    N steps, N network evaluations. Returns x at t_steps[-1] (after the last predictor).
    """
    return solve(unipc_steps, denoiser, x, t_steps, t_model, order=order, variant=variant, lower_order_final=lower_order_final)


def unipc_steps(sch: NoiseSchedule, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None, *,
                on_device: DeviceChecks | None = None, order: int = 3, variant: str = "bh2",
                lower_order_final: bool = True) -> Evaluations:
    """``unipc`` as its network evaluations (``_common.Evaluations``)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown UniPC variant {variant!r}; known: {VARIANTS}")
    if order not in (1, 2, 3):
        raise ValueError(f"UniPC order must be 1, 2 or 3, got {order}")
    n = t_steps.shape[0] - 1
    t_model, to_zero, zero_steps = check_times(x, t_steps, t_model, sch, on_device)
    grid = t_steps[:-1] if to_zero else t_steps  # sigma = 0 has lambda = inf: the last step does not use it
    lam, alpha, sigma = sch.lam(grid), sch.alpha(grid), sch.sigma(grid)
    ds: list[Tensor] = []  # data predictions at the last steps, newest last
    x_last, p = x, 0
    for i in range(n):
        d = yield x, t_model[i]
        if to_zero and i == n - 1:
            # UniP-1 onto sigma = 0 is the data prediction; a corrected x_i would be multiplied by sigma = 0.
            return d
        if i > 0:
            # Corrector UniC-p on step i-1 (UniPC, Zhao et al. 2023), reusing D(x_i) as the point r = 1.
            prev = [(lam[i - 1 - k], ds[-1 - k]) for k in range(1, p)] + [(lam[i], d)]
            x = _uni_update(x_last, ds[-1], lam[i - 1], lam[i], sigma[i] / sigma[i - 1], alpha[i], prev, variant, zero_steps)
        ds = (ds + [d])[-order:]
        p = step_order(i, n, order, lower_order_final, final_below=math.inf)
        x_last = x
        # Predictor UniP-p (UniPC, Zhao et al. 2023).
        prev = [(lam[i - k], ds[-1 - k]) for k in range(1, p)]
        x = _uni_update(x, ds[-1], lam[i], lam[i + 1], sigma[i + 1] / sigma[i], alpha[i + 1], prev, variant, zero_steps)
    return x
