"""Euler / DDIM: first order on an analytic mixture, equal to diffusers' Euler and DDIM, exact gradients."""

from __future__ import annotations

import pytest
import torch

from ld3core.denoisers import NetworkDenoiser
from ld3core.schedules import VPDiscrete
from ld3core.solvers import euler

CONVERGENCE_SCHEDULES = ["vp_linear", "vp_discrete", "edm", "flow"]
GRADIENT_SCHEDULES = ["vp_linear", "edm", "flow"]  # continuous: no interpolation kinks under the finite differences

# Float32 UNet and scheduler arithmetic: agreement to a few float32 ulps of the largest entry.
RTOL = 1e-5


@pytest.mark.parametrize("schedule_name", CONVERGENCE_SCHEDULES)
def test_first_order_convergence(convergence_order, schedule_name):
    order, errors = convergence_order(euler, schedule_name, [16, 32, 64, 128])
    assert order >= 1 - 0.3, (order, errors)
    assert order <= 1 + 0.3, (order, errors)  # the RMS error really is first order, not a lucky cancellation


@pytest.mark.parametrize("schedule_name", GRADIENT_SCHEDULES)
def test_gradients_match_finite_differences(gradient_check, schedule_name):
    gradient_check(euler, schedule_name)


def test_per_sample_times_equal_separate_runs(per_sample_check):
    per_sample_check(euler, "vp_linear")


@pytest.mark.parametrize("n", [1, 4])
def test_evaluates_at_model_times(evaluation_times, n):
    times, t_model, _ = evaluation_times(euler, n)
    torch.testing.assert_close(times, t_model[:n], rtol=0, atol=0)


def _eps_denoiser(unet, schedule):
    return NetworkDenoiser(lambda x, tm: unet(x, tm).sample, schedule, "eps")


def _assert_float_close(ours: torch.Tensor, theirs: torch.Tensor) -> None:
    torch.testing.assert_close(ours, theirs, rtol=RTOL, atol=RTOL * float(theirs.abs().max()))


@pytest.mark.parametrize(("spacing", "n"), [("linspace", 4), ("linspace", 10), ("trailing", 5), ("trailing", 8)])
def test_equals_diffusers_euler_discrete(tiny_unet, diffusers_bridge, spacing, n):
    """EulerDiscreteScheduler (final_sigmas_type="sigma_min") with its own spacing.

    Its state is y = x / alpha = x sqrt(1 + sigma^2) (variance exploding); scale_model_input
    gives the network y / sqrt(1 + sigma^2) = x. Linspace with these N and trailing give
    integer timesteps, where diffusers' sigma interpolation is the table value.
    """
    from diffusers import EulerDiscreteScheduler

    sched = EulerDiscreteScheduler(**diffusers_bridge.betas, timestep_spacing=spacing, final_sigmas_type="sigma_min")
    sched.set_timesteps(n)
    schedule = VPDiscrete(sched.alphas_cumprod)
    t_steps = diffusers_bridge.t_steps(sched.timesteps, schedule)
    assert torch.equal(sched.timesteps, sched.timesteps.round()), "the bridge assumes integer timesteps"
    torch.testing.assert_close(schedule.edm_sigma(t_steps).float(), sched.sigmas, rtol=1e-6, atol=0)

    x_T = diffusers_bridge.initial_noise(schedule, t_steps[0])
    with torch.no_grad():
        ours = euler(_eps_denoiser(tiny_unet, schedule), x_T, t_steps)
        y = x_T / schedule.alpha(t_steps[0]).float()
        for k in sched.timesteps:
            y = sched.step(tiny_unet(sched.scale_model_input(y, k), k).sample, k, y).prev_sample
    _assert_float_close(ours, y * schedule.alpha(schedule.t_min).float())


@pytest.mark.parametrize(("spacing", "n"), [("linspace", 4), ("trailing", 8), ("trailing", 20)])
def test_equals_diffusers_euler_discrete_final_sigma_zero(tiny_unet, diffusers_bridge, spacing, n):
    """EulerDiscreteScheduler's default final sigma 0: our grid ends at t = 0, the last step onto the data prediction."""
    from diffusers import EulerDiscreteScheduler

    sched = EulerDiscreteScheduler(**diffusers_bridge.betas, timestep_spacing=spacing, final_sigmas_type="zero")
    sched.set_timesteps(n)
    assert float(sched.sigmas[-1]) == 0.0
    schedule = VPDiscrete(sched.alphas_cumprod)
    t_steps = diffusers_bridge.t_steps(sched.timesteps, schedule, "zero")
    x_T = diffusers_bridge.initial_noise(schedule, t_steps[0])
    with torch.no_grad():
        ours = euler(_eps_denoiser(tiny_unet, schedule), x_T, t_steps)
        y = x_T / schedule.alpha(t_steps[0]).float()
        for k in sched.timesteps:
            y = sched.step(tiny_unet(sched.scale_model_input(y, k), k).sample, k, y).prev_sample
    _assert_float_close(ours, y)  # alpha = 1 at sigma = 0


@pytest.mark.parametrize("n", [5, 10])
def test_equals_diffusers_ddim_with_alpha_one_at_the_end(tiny_unet, diffusers_bridge, n):
    """DDIMScheduler(set_alpha_to_one=True) steps last into alpha_cumprod = 1, sigma = 0: our grid ending at t = 0."""
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(**diffusers_bridge.betas, set_alpha_to_one=True, clip_sample=False, steps_offset=1)
    sched.set_timesteps(n)
    schedule = VPDiscrete(sched.alphas_cumprod)
    t_steps = diffusers_bridge.t_steps(sched.timesteps, schedule, "zero")
    x_T = diffusers_bridge.initial_noise(schedule, t_steps[0])
    with torch.no_grad():
        ours = euler(_eps_denoiser(tiny_unet, schedule), x_T, t_steps)
        x = x_T
        for k in sched.timesteps:
            x = sched.step(tiny_unet(x, k).sample, k, x).prev_sample
    _assert_float_close(ours, x)


@pytest.mark.parametrize(("steps_offset", "n"), [(1, 5), (1, 10), (0, 10)])
def test_equals_diffusers_ddim(tiny_unet, diffusers_bridge, steps_offset, n):
    """DDIMScheduler (eta = 0, set_alpha_to_one=False, no clipping), "leading" spacing.

    DDIM steps from k to k - 1000 // N and, below 0, into final_alpha_cumprod = alphas_cumprod[0],
    i.e. our t_min. With steps_offset = 0 the last timestep is k = 0 already, so that last step
    has zero length (a repeated t_min, which Euler must pass through unchanged).
    """
    from diffusers import DDIMScheduler

    sched = DDIMScheduler(**diffusers_bridge.betas, set_alpha_to_one=False, clip_sample=False, steps_offset=steps_offset)
    sched.set_timesteps(n)
    schedule = VPDiscrete(sched.alphas_cumprod)
    t_steps = diffusers_bridge.t_steps(sched.timesteps, schedule)
    ratio = sched.config.num_train_timesteps // n
    assert torch.equal(sched.timesteps[:-1] - ratio, sched.timesteps[1:]), "DDIM's previous timestep is our next time"

    x_T = diffusers_bridge.initial_noise(schedule, t_steps[0])
    with torch.no_grad():
        ours = euler(_eps_denoiser(tiny_unet, schedule), x_T, t_steps)
        x = x_T
        for k in sched.timesteps:
            x = sched.step(tiny_unet(x, k).sample, k, x).prev_sample
    _assert_float_close(ours, x)


def test_rejects_bad_time_shapes():
    den = NetworkDenoiser(lambda x, tm: x, VPDiscrete.linear(), "eps")
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError):
        euler(den, x, torch.tensor([1.0]))
    with pytest.raises(ValueError):
        euler(den, x, torch.ones(3, 4))  # 4 columns for a batch of 2
    with pytest.raises(ValueError):
        euler(den, x, torch.tensor([1.0, 0.5, 0.1]), torch.tensor([1.0, 0.1]))
