"""Heun (EDM Alg. 1): second order on an analytic mixture, 2N - 1 evaluations, equal to diffusers' Heun."""

from __future__ import annotations

import pytest
import torch

from ld3core.denoisers import NetworkDenoiser
from ld3core.schedules import VPDiscrete
from ld3core.solvers import SOLVERS, euler, heun

CONVERGENCE_SCHEDULES = ["vp_linear", "vp_discrete", "edm", "flow"]
GRADIENT_SCHEDULES = ["vp_linear", "edm", "flow"]


@pytest.mark.parametrize("schedule_name", CONVERGENCE_SCHEDULES)
def test_second_order_convergence(convergence_order, schedule_name):
    order, errors = convergence_order(heun, schedule_name, [16, 32, 64, 128])
    assert order >= 2 - 0.3, (order, errors)


@pytest.mark.parametrize("schedule_name", GRADIENT_SCHEDULES)
def test_gradients_match_finite_differences(gradient_check, schedule_name):
    gradient_check(heun, schedule_name)


def test_per_sample_times_equal_separate_runs(per_sample_check):
    per_sample_check(heun, "edm")


@pytest.mark.parametrize("n", [1, 2, 5])
def test_evaluates_at_model_times_and_ends_with_euler(evaluation_times, n):
    """2N - 1 evaluations at t_model[0], t_model[1] twice, ..., t_model[N-1] twice; N = 1 is Euler."""
    times, t_model, out = evaluation_times(heun, n)
    assert len(times) == SOLVERS["heun"].nfe(n) == 2 * n - 1
    expected = torch.stack([t_model[0]] + [t_model[i] for i in range(1, n) for _ in range(2)])
    torch.testing.assert_close(times, expected, rtol=0, atol=0)
    if n == 1:
        torch.testing.assert_close(out, evaluation_times(euler, 1)[2], rtol=1e-14, atol=1e-14)


@pytest.mark.parametrize("n", [4, 10])
def test_equals_diffusers_heun_discrete(tiny_unet, diffusers_bridge, n):
    """HeunDiscreteScheduler, "trailing" spacing (integer timesteps), final sigma set to sigma_min.

    Diffusers' Heun always ends at sigma = 0 with a final Euler step; our discrete VP schedule
    ends at t_min (sigma_min = sigma at k = 0), so the test replaces that last sigma. Its state
    is y = x / alpha, as for EulerDiscreteScheduler.
    """
    from diffusers import HeunDiscreteScheduler

    sched = HeunDiscreteScheduler(**diffusers_bridge.betas, timestep_spacing="trailing")
    sched.set_timesteps(n)
    schedule = VPDiscrete(sched.alphas_cumprod)
    assert float(sched.sigmas[-1]) == 0.0
    sched.sigmas[-1] = float(schedule.edm_sigma(schedule.t_min))
    t_steps = diffusers_bridge.t_steps(sched.timesteps[::2], schedule)
    sigmas = torch.cat([sched.sigmas[:1], sched.sigmas[1::2]])  # drop the repeats of the corrector
    torch.testing.assert_close(schedule.edm_sigma(t_steps).float(), sigmas, rtol=1e-6, atol=0)

    x_T = diffusers_bridge.initial_noise(schedule, t_steps[0])
    den = NetworkDenoiser(lambda x, tm: tiny_unet(x, tm).sample, schedule, "eps")
    with torch.no_grad():
        ours = heun(den, x_T, t_steps)
        y = x_T / schedule.alpha(t_steps[0]).float()
        for k in sched.timesteps:
            y = sched.step(tiny_unet(sched.scale_model_input(y, k), k).sample, k, y).prev_sample
    theirs = y * schedule.alpha(schedule.t_min).float()
    torch.testing.assert_close(ours, theirs, rtol=1e-5, atol=1e-5 * float(theirs.abs().max()))


@pytest.mark.parametrize("n", [4, 10])
def test_equals_diffusers_heun_discrete_final_sigma_zero(tiny_unet, diffusers_bridge, n):
    """HeunDiscreteScheduler as it is: its last sigma is 0, our grid ends at t = 0 (the last step onto the data prediction)."""
    from diffusers import HeunDiscreteScheduler

    sched = HeunDiscreteScheduler(**diffusers_bridge.betas, timestep_spacing="trailing")
    sched.set_timesteps(n)
    schedule = VPDiscrete(sched.alphas_cumprod)
    assert float(sched.sigmas[-1]) == 0.0
    t_steps = diffusers_bridge.t_steps(sched.timesteps[::2], schedule, "zero")
    x_T = diffusers_bridge.initial_noise(schedule, t_steps[0])
    den = NetworkDenoiser(lambda x, tm: tiny_unet(x, tm).sample, schedule, "eps")
    with torch.no_grad():
        ours = heun(den, x_T, t_steps)
        y = x_T / schedule.alpha(t_steps[0]).float()
        for k in sched.timesteps:
            y = sched.step(tiny_unet(sched.scale_model_input(y, k), k).sample, k, y).prev_sample
    torch.testing.assert_close(ours, y, rtol=1e-5, atol=1e-5 * float(y.abs().max()))
