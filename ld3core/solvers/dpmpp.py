"""DPM-Solver++ multistep (2M, 3M) in the data-prediction form (Lu et al. 2022, "DPM-Solver++").

With D the data prediction and h = lambda_t - lambda_s, every step is
    x_t = (sigma_t/sigma_s) x_s - alpha_t (e^{-h} - 1) D_s - alpha_t (higher-order difference terms),
the higher-order terms built from earlier steps' D (2M: Alg. 2 of the paper; 3M: the third-order
multistep update of the DPM-Solver reference code, as diffusers runs it). The first steps use
lower orders (warm start). With ``lower_order_final`` and N < 15 the last two steps drop to
orders 1 and 2, which is what diffusers' ``DPMSolverMultistepScheduler`` does by default. A grid
ending at 0 (sigma = 0) ends with the first-order step for every N, as diffusers'
``final_sigmas_type="zero"`` and k-diffusion's ``sample_dpmpp_2m`` do: a higher-order
correction there would divide by h = inf (before: inf or NaN for N >= 15).

The 3M update of the reference code (and of diffusers, k-diffusion's dpmpp_3m_sde at eta = 0)
weights its second difference D2 ~ h^2 D''/2 by h phi_3(-h) where the Taylor integral needs
2 h phi_3(-h): the step is not exact for a quadratic D(lambda), so that "3M" converges with
order 2 only (tests/ld3core/solvers/test_dpmpp.py measures it). ``exact_d2=True`` restores
the factor and third order; the default keeps the ecosystem's formula, so that a schedule
learned here is the one that is best for the solver people run.
"""

from __future__ import annotations

import torch
from torch import Tensor

from ..denoisers import Denoiser
from ..schedules import NoiseSchedule
from ._common import DeviceChecks, Evaluations, bcast, check_times, defined, fill, phi_tail, solve, step_order


def dpmpp_steps(sch: NoiseSchedule, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None, *,
                on_device: DeviceChecks | None = None, order: int = 2,
                lower_order_final: bool = True, exact_d2: bool = False) -> Evaluations:
    """DPM-Solver++ multistep of ``order`` 2 or 3 as its network evaluations (``_common.Evaluations``)."""
    if order not in (2, 3):
        raise ValueError(f"DPM-Solver++ multistep order must be 2 or 3, got {order}")
    n = t_steps.shape[0] - 1
    t_model, to_zero, zero_steps = check_times(x, t_steps, t_model, sch, on_device)
    grid = t_steps[:-1] if to_zero else t_steps  # sigma = 0 has lambda = inf: the last step does not use it
    lam, alpha, sigma = sch.lam(grid), sch.alpha(grid), sch.sigma(grid)
    ds: list[Tensor] = []  # data predictions of the last steps, newest last
    for i in range(n):
        ds = (ds + [(yield x, t_model[i])])[-order:]
        if to_zero and i == n - 1:
            return ds[-1]  # first-order step onto sigma = 0: the data prediction (see ld3core.solvers)
        p = step_order(i, n, order, lower_order_final)
        h = lam[i + 1] - lam[i]
        z = -h
        # First-order part: DDIM in data prediction (DPM-Solver++, Lu et al. 2022).
        x = bcast(sigma[i + 1] / sigma[i], x) * x - bcast(alpha[i + 1] * torch.expm1(z), x) * ds[-1]
        if p == 2:
            # Second-order multistep correction (DPM-Solver++(2M), Alg. 2); first order over a zero-length step.
            ok = defined(zero_steps, h, [lam[i - 1] - lam[i]])
            r0 = fill(ok, lam[i] - lam[i - 1], 1.0) / fill(ok, h, 1.0)
            x = x - bcast(fill(ok, alpha[i + 1] * torch.expm1(z) * 0.5 / r0, 0.0), x) * (ds[-1] - ds[-2])
        elif p == 3:
            # Third-order multistep correction (DPM-Solver reference code, data prediction; D2 see module doc).
            ok = defined(zero_steps, h, [lam[i - 1] - lam[i], lam[i - 2] - lam[i]])
            r0, r1 = fill(ok, lam[i] - lam[i - 1], 1.0) / fill(ok, h, 1.0), fill(ok, lam[i - 1] - lam[i - 2], 1.0) / fill(ok, h, 1.0)
            d1_0 = bcast(1.0 / r0, x) * (ds[-1] - ds[-2])
            d1_1 = bcast(1.0 / r1, x) * (ds[-2] - ds[-3])
            d1 = d1_0 + bcast(r0 / (r0 + r1), x) * (d1_0 - d1_1)
            d2 = bcast((2.0 if exact_d2 else 1.0) / (r0 + r1), x) * (d1_0 - d1_1)
            g1, g2 = phi_tail(z, 2)
            x = x - bcast(fill(ok, alpha[i + 1] * g1, 0.0), x) * d1 - bcast(fill(ok, alpha[i + 1] * g2, 0.0), x) * d2
    return x


def dpmpp_2m(denoiser: Denoiser, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None, *,
             lower_order_final: bool = True) -> Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022). N steps, N network evaluations. Returns x at t_steps[-1]."""
    return solve(dpmpp_steps, denoiser, x, t_steps, t_model, order=2, lower_order_final=lower_order_final)


def dpmpp_3m(denoiser: Denoiser, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None, *,
             lower_order_final: bool = True, exact_d2: bool = False) -> Tensor:
    """DPM-Solver++(3M) (Lu et al. 2022). N steps, N network evaluations. Returns x at t_steps[-1].

    ``exact_d2=False`` is diffusers' formula (order 2, see the module docstring); True is order 3.
    """
    return solve(dpmpp_steps, denoiser, x, t_steps, t_model, order=3, lower_order_final=lower_order_final, exact_d2=exact_d2)
