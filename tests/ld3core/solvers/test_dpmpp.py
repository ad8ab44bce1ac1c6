"""DPM-Solver++ 2M / 3M: convergence orders on an analytic mixture, equality with diffusers'
DPMSolverMultistepScheduler, exact gradients in both time vectors, per-sample grids.

Observed orders (RMS error, logSNR steps N = 64..256): 2M ~2.0; 3M as diffusers writes it
~2.0 (its D2 term is half the Taylor coefficient, see ``ld3core.solvers.dpmpp``); 3M with
``exact_d2=True`` ~2.9 (local slopes 2.6, 2.9, 3.0 from N = 32 on: pre-asymptotic below that).
"""

from __future__ import annotations

import math
from functools import partial

import pytest
import torch

from ld3core.schedules import DTYPE, EDM
from ld3core.solvers import dpmpp_2m, dpmpp_3m
from ld3core.solvers._common import phi_tail

CONVERGENCE_SCHEDULES = ["vp_linear", "vp_discrete", "edm", "flow"]
GRADIENT_SCHEDULES = ["vp_linear", "edm", "flow"]  # continuous: no interpolation kinks under the finite differences
SOLVERS = {"2m": dpmpp_2m, "3m": dpmpp_3m, "3m_exact": partial(dpmpp_3m, exact_d2=True)}

# diffusers keeps its sigmas in float32 and runs the update in float32 ("upcast" of the sample):
# we agree to ~1.5e-6 of the largest entry; float32 rounding of its lambda differences is the gap.
RTOL = 1e-5



@pytest.mark.parametrize("schedule_name", CONVERGENCE_SCHEDULES)
@pytest.mark.parametrize(("name", "expected"), [("2m", 2), ("3m_exact", 3)])
def test_convergence_order(convergence_order, schedule_name, name, expected):
    fitted, errors = convergence_order(SOLVERS[name], schedule_name, [64, 128, 256])
    assert fitted >= expected - 0.3, (fitted, errors)


@pytest.mark.parametrize("schedule_name", CONVERGENCE_SCHEDULES)
def test_diffusers_3m_formula_is_second_order(convergence_order, schedule_name):
    """The widespread 3M update (diffusers, DPM-Solver's code, k-diffusion) is order 2, and more
    accurate than 2M; ``exact_d2`` is order 3. If this fails, the default formula changed."""
    ns = [64, 128, 256]
    fitted, errors = convergence_order(dpmpp_3m, schedule_name, ns)
    _, errors_2m = convergence_order(dpmpp_2m, schedule_name, ns)
    assert abs(fitted - 2) < 0.3, (fitted, errors)
    assert all(e3 < e2 for e3, e2 in zip(errors, errors_2m))


def test_third_order_step_is_exact_for_quadratic_data_prediction():
    """With D = a + b lambda + c lambda^2 (no x dependence) a 3M step equals the exact
    x_t = (sigma_t/sigma_s) x_s + sigma_t int e^lambda D dlambda with ``exact_d2`` only."""
    a, b, c = 1.0, 0.7, -0.3

    class Quadratic:
        schedule = EDM()

        def __call__(self, x, t):
            lam = self.schedule.lam(t)
            return torch.ones_like(x) * (a + b * lam + c * lam**2)

    den, sch = Quadratic(), EDM()
    t = torch.tensor([3.0, 1.5, 0.9, 0.4], dtype=DTYPE)  # uneven steps; orders 1, 2, 3
    primitive = lambda lam: torch.exp(lam) * (a - b + 2 * c + (b - 2 * c) * lam + c * lam**2)  # noqa: E731
    lam = sch.lam(t)
    exact = sch.sigma(t[3]) * (primitive(lam[3]) - primitive(lam[2]))
    x = torch.zeros(1, 1, dtype=DTYPE)
    for exact_d2, expect_exact in ((True, True), (False, False)):
        run = partial(dpmpp_3m, den, x, lower_order_final=False, exact_d2=exact_d2)
        last_step = run(t) - sch.sigma(t[3]) / sch.sigma(t[2]) * run(t[:3])  # the affine step's increment
        assert (float((last_step - exact).abs()) < 1e-12 * float(exact.abs())) == expect_exact


GRADIENT_CASES = [(n, s) for n in ("2m", "3m") for s in GRADIENT_SCHEDULES] + [("3m_exact", "edm")]


@pytest.mark.parametrize(("name", "schedule_name"), GRADIENT_CASES)
def test_gradients_match_finite_differences(gradient_check, schedule_name, name):
    gradient_check(SOLVERS[name], schedule_name, n=6)  # 3M: orders 1, 2, 3, 3, 2, 1


def test_gradients_with_a_small_step(small_step_gradcheck):
    """A step with h = 0.1 < 0.2 takes the Taylor branch of ``phi_tail``; gradients stay exact."""
    small_step_gradcheck(dpmpp_3m)


@pytest.mark.parametrize("name", list(SOLVERS))
def test_per_sample_times_equal_separate_runs(per_sample_check, name):
    per_sample_check(SOLVERS[name], "vp_linear")


@pytest.mark.parametrize("name", list(SOLVERS))
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_one_network_evaluation_per_step_at_the_model_times(evaluation_times, name, n):
    times, t_model, _ = evaluation_times(SOLVERS[name], n)
    torch.testing.assert_close(times, t_model[:n], rtol=0, atol=0)


def test_phi_tail_matches_series_on_both_branches():
    """g_k = z phi_{k+1}(z) against its power series (30 terms: exact in float64 for |z| <= 4)."""
    z = torch.tensor([-4.0, -1.3, -0.2 - 1e-9, -0.2 + 1e-9, -0.05, -1e-7, 0.0, 1e-3, 0.3, 2.0], dtype=DTYPE)
    for k, g in enumerate(phi_tail(z, 3), start=1):
        series = sum(z ** (j + 1) / float(math.factorial(j + k + 1)) for j in range(30))
        torch.testing.assert_close(g, series, rtol=1e-12, atol=1e-300)
    zr = z.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sum(g.sum() for g in phi_tail(zr, 3)), zr)
    assert bool(torch.isfinite(grad).all())


# --- Equality with diffusers -------------------------------------------------------------------


def _scheduler(order, final="sigma_min", **kw):
    from diffusers import DPMSolverMultistepScheduler

    return DPMSolverMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
        solver_order=order, algorithm_type="dpmsolver++", final_sigmas_type=final, **kw,
    )


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 14, 15, 20])
def test_equals_diffusers(tiny_unet, diffusers_bridge, order, n):
    """Scheduler's own "linspace" spacing; N = 14 and 15 straddle its lower-order-final rule (N < 15)."""
    sched = _scheduler(order)
    sched.set_timesteps(n)
    ours, theirs = diffusers_bridge.run_both(tiny_unet, sched, dpmpp_2m if order == 2 else dpmpp_3m)
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("timesteps", [[999, 800, 500, 420, 130, 40, 7], [950, 300, 120, 60, 30, 10, 5, 2, 1, 0]])
def test_equals_diffusers_custom_timesteps(tiny_unet, diffusers_bridge, order, timesteps):
    sched = _scheduler(order)
    sched.set_timesteps(timesteps=timesteps)
    ours, theirs = diffusers_bridge.run_both(tiny_unet, sched, dpmpp_2m if order == 2 else dpmpp_3m)
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 14, 15, 20, 40])
def test_equals_diffusers_final_sigma_zero(tiny_unet, diffusers_bridge, order, n):
    """final_sigmas_type="zero" (diffusers' default): our grid ends at t = 0 and its last step is
    first order for every N, as diffusers'. From N = 15 on the old code returned inf here."""
    sched = _scheduler(order, final="zero")
    sched.set_timesteps(n)
    assert float(sched.sigmas[-1]) == 0.0
    ours, theirs = diffusers_bridge.run_both(tiny_unet, sched, dpmpp_2m if order == 2 else dpmpp_3m)
    assert bool(torch.isfinite(ours).all())
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


@pytest.mark.parametrize("order", [2, 3])
def test_equals_diffusers_final_sigma_zero_custom_timesteps(tiny_unet, diffusers_bridge, order):
    sched = _scheduler(order, final="zero")
    sched.set_timesteps(timesteps=[999, 800, 500, 420, 130, 40, 7])
    ours, theirs = diffusers_bridge.run_both(tiny_unet, sched, dpmpp_2m if order == 2 else dpmpp_3m)
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


def test_diffusers_comparison_is_sensitive(tiny_unet, diffusers_bridge):
    """The wrong lower-order rule or the exact-D2 variant misses diffusers by far more than RTOL."""
    sched = _scheduler(3)
    sched.set_timesteps(8)
    for wrong in (partial(dpmpp_3m, lower_order_final=False), partial(dpmpp_3m, exact_d2=True), dpmpp_2m):
        sched.set_timesteps(8)
        ours, theirs = diffusers_bridge.run_both(tiny_unet, sched, wrong)
        assert float((ours - theirs).abs().max()) > 100 * RTOL * float(theirs.abs().max())
