"""UniPC (bh1, bh2; orders 1-3): convergence orders on an analytic mixture, equality with
diffusers' UniPCMultistepScheduler, exact gradients in both time vectors, per-sample grids.

Observed orders (RMS error, logSNR steps N = 64..256, lower_order_final off): UniPC-p with its
corrector converges with order p + 1: ~2.0, ~3.0, ~4.0 for p = 1, 2, 3. bh1 and bh2 differ
only where a single coefficient is fixed to 1/2 (UniP-2, UniC-1); with the full linear solve
rho B(h) does not depend on B(h), so at order 3 the two agree except in the warm start.
With lower_order_final on (diffusers' rule: order <= N - i on every run) the last step is a
first-order step and the asymptotic order drops to 2, invisible at practical N because
D(lambda) barely moves near t_min.
"""

from __future__ import annotations

import copy
from functools import partial

import pytest
import torch

from ld3core.analytic import AnalyticDenoiser, GaussianMixture
from ld3core.denoisers import NetworkDenoiser
from ld3core.heuristics import edm
from ld3core.schedules import DTYPE, EDM, VPDiscrete
from ld3core.solvers import unipc

CONVERGENCE_SCHEDULES = ["vp_linear", "vp_discrete", "edm", "flow"]
GRADIENT_SCHEDULES = ["vp_linear", "edm", "flow"]  # continuous: no interpolation kinks under the finite differences
VARIANTS = ["bh1", "bh2"]

# diffusers keeps its sigmas in float32: we agree to ~6e-7 of the largest entry in float32.
# Given float64 sigmas, its UniPC runs in the sample's dtype and we agree to ~1e-15.
RTOL = 1e-5
RTOL_F64 = 1e-12



@pytest.mark.parametrize("schedule_name", CONVERGENCE_SCHEDULES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("order", [1, 2, 3])
def test_convergence_order_is_p_plus_one(convergence_order, schedule_name, variant, order):
    solver = partial(unipc, order=order, variant=variant, lower_order_final=False)
    fitted, errors = convergence_order(solver, schedule_name, [64, 128, 256])
    assert fitted >= order + 1 - 0.3, (fitted, errors)


@pytest.mark.parametrize("schedule_name", GRADIENT_SCHEDULES)
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("order", [2, 3])
def test_gradients_match_finite_differences(gradient_check, schedule_name, variant, order):
    gradient_check(partial(unipc, order=order, variant=variant), schedule_name, n=6)  # orders 1, 2, 3, 3, 2, 1


@pytest.mark.parametrize("variant", VARIANTS)
def test_gradients_with_a_small_step(small_step_gradcheck, variant):
    """A step with h = 0.1 < 0.2 takes the Taylor branch of the phi functions; gradients stay exact."""
    small_step_gradcheck(partial(unipc, variant=variant))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("order", [2, 3])
def test_per_sample_times_equal_separate_runs(per_sample_check, variant, order):
    per_sample_check(partial(unipc, order=order, variant=variant), "vp_linear")


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("n", [1, 2, 3, 7])
def test_one_network_evaluation_per_step_at_the_model_times(evaluation_times, order, n):
    """The corrector reuses the next step's evaluation; nothing is evaluated after the last step."""
    times, t_model, _ = evaluation_times(partial(unipc, order=order), n)
    torch.testing.assert_close(times, t_model[:n], rtol=0, atol=0)


def test_rejects_unknown_options():
    den = AnalyticDenoiser(_mixture(), EDM())
    t = edm(EDM(), 3)
    with pytest.raises(ValueError):
        unipc(den, torch.zeros(1, 2, dtype=DTYPE), t, variant="bh3")
    with pytest.raises(ValueError):
        unipc(den, torch.zeros(1, 2, dtype=DTYPE), t, order=4)


def _mixture():
    return GaussianMixture(torch.tensor([[-1.0, 0.0], [1.0, 0.5]]), torch.tensor([0.5, 0.4]), torch.tensor([0.5, 0.5]))


# --- Equality with diffusers -------------------------------------------------------------------


def _scheduler(order, variant, final="sigma_min"):
    from diffusers import UniPCMultistepScheduler

    return UniPCMultistepScheduler(
        num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02,
        solver_order=order, solver_type=variant, predict_x0=True, final_sigmas_type=final,
    )


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 14, 15, 20])
def test_equals_diffusers(tiny_unet, diffusers_bridge, variant, order, n):
    """Scheduler's own "linspace" spacing; N < order exercises the warm start and the final lower orders."""
    sched = _scheduler(order, variant)
    sched.set_timesteps(n)
    ours, theirs = diffusers_bridge.run_both(tiny_unet, sched, partial(unipc, order=order, variant=variant))
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("n", [4, 9])
def test_equals_diffusers_in_float64(tiny_unet, diffusers_bridge, variant, order, n):
    """With float64 sigmas, model and sample, diffusers' UniPC and ours agree to rounding:
    the coefficients, the lower-order rules and the corrector bookkeeping are the same."""
    sched = _scheduler(order, variant)
    sched.set_timesteps(n)
    ac = sched.alphas_cumprod.to(DTYPE)
    sigmas = ((1 - ac) / ac).sqrt()
    sched.sigmas = torch.cat([sigmas[sched.timesteps], sigmas[:1]])  # float64 in place of float32
    unet64 = copy.deepcopy(tiny_unet).double()
    ours, theirs = diffusers_bridge.run_both(unet64, sched, partial(unipc, order=order, variant=variant), DTYPE)
    assert theirs.dtype == DTYPE
    torch.testing.assert_close(ours, theirs, rtol=RTOL_F64, atol=RTOL_F64 * float(theirs.abs().max()))


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("n", [1, 2, 5, 15, 20])
def test_equals_diffusers_final_sigma_zero(tiny_unet, diffusers_bridge, order, n):
    """final_sigmas_type="zero" (diffusers' default), bh2: our grid ends at t = 0, UniP-1 onto the data prediction."""
    sched = _scheduler(order, "bh2", final="zero")
    sched.set_timesteps(n)
    assert float(sched.sigmas[-1]) == 0.0
    ours, theirs = diffusers_bridge.run_both(tiny_unet, sched, partial(unipc, order=order, variant="bh2"))
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


@pytest.mark.parametrize("order", [2, 3])
@pytest.mark.parametrize("n", [2, 5, 15])
def test_bh1_to_zero_equals_diffusers_steps_and_its_data_prediction(tiny_unet, diffusers_bridge, order, n):
    """diffusers 0.42.1's bh1 update at sigma = 0 multiplies B(h) = -h = -inf by its (empty) sum of
    differences and returns NaN. Its steps up to the last one and its own data prediction at the
    last timestep (convert_model_output) are the reference: our bh1 returns that, finite."""
    sched = _scheduler(order, "bh1", final="zero")
    sched.set_timesteps(n)
    schedule = VPDiscrete(sched.alphas_cumprod)
    t_steps = diffusers_bridge.t_steps(sched.timesteps, schedule, "zero")
    x = x_T = diffusers_bridge.initial_noise(schedule, t_steps[0])
    with torch.no_grad():
        ours = unipc(NetworkDenoiser(lambda x, tm: tiny_unet(x, tm).sample, schedule, "eps"), x_T, t_steps,
                     order=order, variant="bh1")
        for k in sched.timesteps[:-1]:
            x = sched.step(tiny_unet(x, k).sample, k, x).prev_sample
        k = sched.timesteps[-1]
        theirs = sched.convert_model_output(tiny_unet(x, k).sample, sample=x)
    assert bool(torch.isfinite(ours).all())
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


@pytest.mark.parametrize("n", [4, 16])
def test_equals_diffusers_final_sigma_zero_in_float64(tiny_unet, diffusers_bridge, n):
    variant = "bh2"
    sched = _scheduler(3, variant, final="zero")
    sched.set_timesteps(n)
    ac = sched.alphas_cumprod.to(DTYPE)
    sigmas = ((1 - ac) / ac).sqrt()
    sched.sigmas = torch.cat([sigmas[sched.timesteps], torch.zeros(1, dtype=DTYPE)])  # float64 in place of float32
    unet64 = copy.deepcopy(tiny_unet).double()
    ours, theirs = diffusers_bridge.run_both(unet64, sched, partial(unipc, order=3, variant=variant), DTYPE)
    torch.testing.assert_close(ours, theirs, rtol=RTOL_F64, atol=RTOL_F64 * float(theirs.abs().max()))


def test_diffusers_comparison_is_sensitive(tiny_unet, diffusers_bridge):
    """The other variant, order or lower-order rule misses diffusers by far more than RTOL."""
    sched = _scheduler(3, "bh1")
    wrong = [
        partial(unipc, order=3, variant="bh2"),
        partial(unipc, order=2, variant="bh1"),
        partial(unipc, order=3, variant="bh1", lower_order_final=False),
    ]
    for solver in wrong:
        sched.set_timesteps(8)
        ours, theirs = diffusers_bridge.run_both(tiny_unet, sched, solver)
        assert float((ours - theirs).abs().max()) > 100 * RTOL * float(theirs.abs().max())
