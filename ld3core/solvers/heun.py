"""Heun: EDM's second-order method (Karras et al. 2022, Alg. 1), for every schedule.

It works on y = x / alpha in s = sigma / alpha, where the diffusion ODE reads dy/ds = (y - D) / s
(Karras et al. 2022, Sec. 2); for EDM (alpha = 1, sigma = t) it is EDM's Heun exactly.
The last step is plain Euler (EDM's convention), so N steps cost 2N - 1 evaluations.
"""

from __future__ import annotations

from torch import Tensor

from ..denoisers import Denoiser
from ..schedules import NoiseSchedule
from ._common import DeviceChecks, Evaluations, bcast, check_times, solve


def heun(denoiser: Denoiser, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None) -> Tensor:
    """N steps, 2N - 1 network evaluations. Returns x at t_steps[-1] (a final 0: the data prediction)."""
    return solve(heun_steps, denoiser, x, t_steps, t_model)


def heun_steps(sch: NoiseSchedule, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None, *,
                on_device: DeviceChecks | None = None) -> Evaluations:
    """``heun`` as its network evaluations (``_common.Evaluations``)."""
    t_model, to_zero, _ = check_times(x, t_steps, t_model, sch, on_device)
    n = t_steps.shape[0] - 1
    for i in range(n):
        if to_zero and i == n - 1:
            return (yield x, t_model[i])  # Euler step onto sigma = 0: the data prediction (see ld3core.solvers)
        s_cur, s_next = sch.edm_sigma(t_steps[i]), sch.edm_sigma(t_steps[i + 1])
        a_next, ds = bcast(sch.alpha(t_steps[i + 1]), x), bcast(s_next - s_cur, x)
        y = x / bcast(sch.alpha(t_steps[i]), x)
        d = (y - (yield x, t_model[i])) / bcast(s_cur, x)
        # Euler predictor (EDM Alg. 1).
        y_next = y + ds * d
        if i < n - 1:
            # Trapezoidal corrector at the next point (EDM Alg. 1).
            d_next = (y_next - (yield a_next * y_next, t_model[i + 1])) / bcast(s_next, x)
            y_next = y + ds * (d + d_next) / 2
        x = a_next * y_next
    return x
