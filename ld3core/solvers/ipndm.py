"""iPNDM: improved PNDM (Zhang & Chen 2023, DEIS), as in AMED's and LD3's code.

Explicit Adams-Bashforth on y = x / alpha in s = sigma / alpha, dy/ds = d = (y - D) / s, with
the fixed coefficients of equal steps, warm-started at lower order. N steps, N evaluations.
Order p holds only for equal steps in s and an exact start: on smooth unequal grids (logSNR,
EDM's rho = 7) the multistep part is second order, and the Euler warm start alone limits the
global error to O(h^2) on any grid; see tests/ld3core/solvers/test_ipndm.py.
"""

from __future__ import annotations

from torch import Tensor

from ..denoisers import Denoiser
from ..schedules import NoiseSchedule
from ._common import DeviceChecks, Evaluations, bcast, check_times, solve

# Adams-Bashforth coefficients for equal steps, newest derivative first (iPNDM, DEIS; AMED).
AB_COEFFS = {
    1: (1.0,),
    2: (3 / 2, -1 / 2),
    3: (23 / 12, -16 / 12, 5 / 12),
    4: (55 / 24, -59 / 24, 37 / 24, -9 / 24),
}


def ipndm(denoiser: Denoiser, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None, *, order: int = 4) -> Tensor:
    """N steps, N network evaluations, multistep order up to ``order`` (1..4). Returns x at t_steps[-1]
    (a final 0: the data prediction of the last evaluation, not an Adams-Bashforth step)."""
    return solve(ipndm_steps, denoiser, x, t_steps, t_model, order=order)


def ipndm_steps(sch: NoiseSchedule, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None, *,
                on_device: DeviceChecks | None = None, order: int = 4) -> Evaluations:
    """``ipndm`` as its network evaluations (``_common.Evaluations``)."""
    if order not in AB_COEFFS:
        raise ValueError(f"iPNDM order must be 1..4, got {order}")
    t_model, to_zero, _ = check_times(x, t_steps, t_model, sch, on_device)
    n = t_steps.shape[0] - 1
    history: list[Tensor] = []  # derivatives, newest first
    for i in range(n):
        if to_zero and i == n - 1:
            return (yield x, t_model[i])  # first-order step onto sigma = 0: the data prediction (see ld3core.solvers)
        s_cur, s_next = sch.edm_sigma(t_steps[i]), sch.edm_sigma(t_steps[i + 1])
        y = x / bcast(sch.alpha(t_steps[i]), x)
        history = [(y - (yield x, t_model[i])) / bcast(s_cur, x)] + history[: order - 1]
        # Adams-Bashforth step, lower order while the history fills (iPNDM warm start).
        slope = sum(c * d for c, d in zip(AB_COEFFS[len(history)], history))
        x = bcast(sch.alpha(t_steps[i + 1]), x) * (y + bcast(s_next - s_cur, x) * slope)
    return x
