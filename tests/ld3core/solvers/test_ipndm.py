"""iPNDM: fixed-coefficient Adams-Bashforth in s = sigma / alpha (DEIS; AMED's and LD3's code).

Observed orders, and why (see also the module docstring):
- The coefficients assume equal steps in s. On a grid that is smooth but not uniform in s
  (logSNR, EDM's rho = 7), consecutive steps differ by O(h^2) and the multistep part of every
  order >= 2 is second-order accurate.
- The warm start takes an Euler step first, a local error O(h^2), so even on grids uniform in s
  the global error of orders 3 and 4 is O(h^2) asymptotically (it stays small in practice
  because the trajectory is nearly straight at high noise, where the warm start runs).
So on the analytic mixture every order >= 2 converges at order 2; that the multistep formula
itself has order p is checked separately on an ODE whose warm start is exact.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch

from ld3core.analytic import AnalyticDenoiser, GaussianMixture
from ld3core.heuristics import logsnr
from ld3core.schedules import DTYPE, EDM, RectifiedFlow, VPLinear
from ld3core.solvers import euler, ipndm

CONVERGENCE_SCHEDULES = ["vp_linear", "vp_discrete", "edm", "flow"]
GRADIENT_SCHEDULES = ["vp_linear", "edm", "flow"]


@pytest.mark.parametrize("order", [2, 3, 4])
@pytest.mark.parametrize("schedule_name", CONVERGENCE_SCHEDULES)
def test_second_order_convergence_on_logsnr_steps(convergence_order, schedule_name, order):
    fitted, errors = convergence_order(partial(ipndm, order=order), schedule_name, [32, 64, 128, 256])
    assert fitted >= 2 - 0.3, (fitted, errors)


@pytest.mark.parametrize("schedule", [VPLinear(), EDM(), RectifiedFlow()], ids=lambda s: s.name)
def test_order_one_is_euler(schedule):
    """iPNDM-1 (Euler on y = x / alpha in s) and the DDIM form of ``euler`` are one method."""
    mixture = GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), torch.tensor([0.5, 0.4]), torch.tensor([0.5, 0.5]))
    den = AnalyticDenoiser(mixture, schedule)
    x = torch.randn(4, 2, generator=torch.Generator().manual_seed(0), dtype=DTYPE) * schedule.sigma_T
    t = logsnr(schedule, 7)
    torch.testing.assert_close(ipndm(den, x, t, order=1), euler(den, x, t), rtol=1e-12, atol=1e-12)


class _LinearODE:
    """An EDM-form denoiser whose ODE dy/ds = g(s) y has g = A (s_c - s)_+^6 and solution
    y(s) = y(s_0) exp(-A (s_c - s)^7 / 7) for s <= s_c <= s_0.

    g vanishes above s_c, so on a grid uniform in s that keeps the first three steps above
    s_c the warm start is exact, and the error is that of the Adams-Bashforth steps alone.
    """

    s_c, amp = 0.75, 2.0

    def __init__(self) -> None:
        self.schedule = EDM()

    def g(self, s: torch.Tensor) -> torch.Tensor:
        return self.amp * (self.s_c - s).clamp(min=0) ** 6

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:  # D = y - s dy/ds
        return x - t * self.g(t) * x

    def exact(self, y0: torch.Tensor, s_end: float) -> torch.Tensor:
        return y0 * np.exp(-self.amp * (self.s_c - s_end) ** 7 / 7)


@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_multistep_order_with_exact_warm_start(order):
    ode = _LinearODE()
    y0 = torch.tensor([[1.0, -2.0]], dtype=DTYPE)
    s0, s_end = 1.0, 0.01
    ns = [32, 48, 64, 96, 128]
    errors = []
    for n in ns:
        t_steps = torch.linspace(s0, s_end, n + 1, dtype=DTYPE)  # uniform in s (EDM: t = s)
        assert float(t_steps[3]) > ode.s_c
        errors.append(float((ipndm(ode, y0, t_steps, order=order) - ode.exact(y0, s_end)).abs().max()))
    fitted = -float(np.polyfit(np.log(ns), np.log(errors), 1)[0])
    assert fitted >= order - 0.3, (fitted, errors)


@pytest.mark.parametrize("order", [2, 4])
@pytest.mark.parametrize("schedule_name", GRADIENT_SCHEDULES)
def test_gradients_match_finite_differences(gradient_check, schedule_name, order):
    gradient_check(partial(ipndm, order=order), schedule_name, n=5)


@pytest.mark.parametrize("n", [1, 6])
def test_evaluates_at_model_times(evaluation_times, n):
    times, t_model, _ = evaluation_times(ipndm, n)
    torch.testing.assert_close(times, t_model[:n], rtol=0, atol=0)


def test_per_sample_times_equal_separate_runs(per_sample_check):
    per_sample_check(ipndm, "flow")


def test_rejects_unknown_order():
    den = AnalyticDenoiser(GaussianMixture(torch.zeros(1, 2), torch.ones(1), torch.ones(1)), EDM())
    with pytest.raises(ValueError, match="order must be 1..4"):
        ipndm(den, torch.zeros(1, 2), torch.tensor([1.0, 0.5]), order=5)
