"""Shared by the solver tests: an analytic mixture, accurate reference solutions, a tiny UNet.

The probability-flow ODE on y = x / alpha, dy/ds = (y - D) / s in s = sigma / alpha (Karras et al.
2022), reads dy/dlambda = D(y, s) - y in lambda = log(alpha / sigma) = -log s. D is the mixture's
exact posterior mean in the variance-exploding form (alpha = 1, sigma = s). The ODE does not
depend on the schedule, which only sets the end points and maps y back to x.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from ld3core.analytic import AnalyticDenoiser, GaussianMixture
from ld3core.denoisers import NetworkDenoiser
from ld3core.heuristics import HEURISTICS, edm, logsnr
from ld3core.schedules import DTYPE, EDM, NoiseSchedule, RectifiedFlow, VPDiscrete, VPLinear

# Broad, overlapping components: a smooth ODE, so the asymptotic orders show at modest N.
MIXTURE = GaussianMixture(
    means=torch.tensor([[-1.0, 0.0], [1.0, 0.5], [0.0, -1.0]]),
    stds=torch.tensor([0.5, 0.6, 0.4]),
    weights=torch.tensor([0.3, 0.3, 0.4]),
)

CONVERGENCE_SCHEDULES = {"vp_linear": VPLinear, "vp_discrete": VPDiscrete.linear, "edm": EDM, "flow": RectifiedFlow}
GRADIENT_SCHEDULES = {"vp_linear": VPLinear, "edm": EDM, "flow": RectifiedFlow}


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny tensors: intra-op threads only add contention on a busy host (many times slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def prior_sample(schedule: NoiseSchedule, n: int = 8, seed: int = 0) -> torch.Tensor:
    """x_T ~ N(0, sigma_T^2 I) in float64."""
    return torch.randn(n, MIXTURE.dim, generator=torch.Generator().manual_seed(seed), dtype=DTYPE) * schedule.sigma_T


def reference_solution(schedule: NoiseSchedule, x: torch.Tensor, t_start: float, t_end: float) -> torch.Tensor:
    """The ODE solution from (x, t_start) at t_end, DOP853 in float64 with rtol = atol = 1e-12."""
    one = torch.ones((), dtype=DTYPE)

    def rhs(lam: float, y: np.ndarray) -> np.ndarray:
        yt = torch.from_numpy(y).reshape(x.shape)
        s = torch.exp(-torch.tensor(lam, dtype=DTYPE))
        return (MIXTURE.posterior_mean(yt, one, s) - yt).numpy().ravel()

    y0 = (x / schedule.alpha(t_start)).numpy().ravel()
    lams = (float(schedule.lam(t_start)), float(schedule.lam(t_end)))
    sol = solve_ivp(rhs, lams, y0, method="DOP853", rtol=1e-12, atol=1e-12)
    assert sol.success, sol.message
    return torch.from_numpy(sol.y[:, -1]).reshape(x.shape) * schedule.alpha(t_end)


def fitted_order(ns: list[int], errors: list[float]) -> float:
    """Minus the least-squares slope of log(error) against log(N)."""
    return -float(np.polyfit(np.log(ns), np.log(errors), 1)[0])


@pytest.fixture(scope="session")
def convergence_order():
    """``order(solver, schedule_name, ns) -> (fitted order, RMS errors)`` on logSNR steps from T to t_min."""
    cache: dict[str, tuple] = {}

    def order(solver, schedule_name: str, ns: list[int]) -> tuple[float, list[float]]:
        if schedule_name not in cache:
            schedule = CONVERGENCE_SCHEDULES[schedule_name]()
            x = prior_sample(schedule)
            cache[schedule_name] = (schedule, x, reference_solution(schedule, x, schedule.T, schedule.t_min))
        schedule, x, ref = cache[schedule_name]
        den = AnalyticDenoiser(MIXTURE, schedule)
        errors = [float((solver(den, x, logsnr(schedule, n)) - ref).pow(2).mean().sqrt()) for n in ns]
        return fitted_order(ns, errors), errors

    return order


def _finite_difference_check(solver, schedule_name: str, n: int = 4) -> None:
    """Autograd gradients of a fixed linear read-out w.r.t. the interior t_steps and all of
    t_model equal central finite differences (float64, analytic denoiser)."""
    schedule = GRADIENT_SCHEDULES[schedule_name]()
    den = AnalyticDenoiser(MIXTURE, schedule)
    x = prior_sample(schedule, n=3)
    w = torch.randn(x.shape, generator=torch.Generator().manual_seed(1), dtype=DTYPE)
    t_steps = edm(schedule, n)
    t_model = t_steps.clone()
    t_model[1:-1] -= 0.2 * (t_steps[1:-1] - t_steps[2:])  # decoupled, inside the gaps

    def loss(ts: torch.Tensor, tm: torch.Tensor) -> torch.Tensor:
        return (solver(den, x, ts, tm) * w).sum()

    def central(which: int, i: int) -> float:
        times = [t_steps, t_model]
        eps = 1e-6 * max(abs(float(times[which][i])), 1e-2)
        up, down = [t.clone() for t in times], [t.clone() for t in times]
        up[which][i] += eps
        down[which][i] -= eps
        return float((loss(*up) - loss(*down)) / (2 * eps))

    ts, tm = t_steps.clone().requires_grad_(True), t_model.clone().requires_grad_(True)
    g_ts, g_tm = torch.autograd.grad(loss(ts, tm), (ts, tm))
    fd_ts = torch.tensor([central(0, i) for i in range(1, n)], dtype=DTYPE)
    fd_tm = torch.tensor([central(1, i) for i in range(n + 1)], dtype=DTYPE)
    torch.testing.assert_close(g_ts[1:n], fd_ts, rtol=1e-5, atol=1e-8 * float(fd_ts.abs().max()))
    torch.testing.assert_close(g_tm, fd_tm, rtol=1e-5, atol=1e-8 * float(fd_tm.abs().max()))
    # Not trivially zero: every interior step time and the first model time matter.
    assert bool((g_ts[1:n].abs() > 0).all()) and float(g_tm[0].abs()) > 0


@pytest.fixture(scope="session")
def gradient_check():
    """``check(solver, schedule_name, n=4)``: autograd vs central finite differences in t_steps and t_model."""
    return _finite_difference_check


def _per_sample_check(solver, schedule_name: str, n: int = 5) -> None:
    """Per-sample t_steps / t_model of shape (N+1, B) equal B separate runs."""
    schedule = GRADIENT_SCHEDULES[schedule_name]()
    den = AnalyticDenoiser(MIXTURE, schedule)
    x = prior_sample(schedule, n=3)
    t_steps = torch.stack([HEURISTICS[h](schedule, n) for h in ("logsnr", "edm", "time_quadratic")], dim=1)
    t_model = t_steps.clone()
    t_model[1:-1] -= 0.1 * (t_steps[1:-1] - t_steps[2:])
    batched = solver(den, x, t_steps, t_model)
    single = [solver(den, x[b : b + 1], t_steps[:, b], t_model[:, b]) for b in range(3)]
    torch.testing.assert_close(batched, torch.cat(single), rtol=1e-12, atol=1e-12)
    # The grids differ enough to change the result, so a mixed-up column would be caught.
    other = solver(den, x[:1], t_steps[:, 1], t_model[:, 1])
    assert float((single[0] - other).abs().max()) > 1e-4


@pytest.fixture(scope="session")
def per_sample_check():
    """``check(solver, schedule_name, n=5)``: per-sample (N+1, B) time grids equal separate runs."""
    return _per_sample_check


class _Recording:
    """A denoiser that records the times it is evaluated at."""

    def __init__(self, inner) -> None:
        self.inner, self.schedule, self.times = inner, inner.schedule, []

    def __call__(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        self.times.append(t)
        return self.inner(x, t)


def _evaluation_times(solver, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Run ``solver`` for n steps with decoupled model times (EDM, analytic mixture).

    Returns (the times the network saw, stacked; t_model; the solver's output).
    """
    schedule = EDM()
    den = _Recording(AnalyticDenoiser(MIXTURE, schedule))
    t_steps = edm(schedule, n)
    t_model = t_steps.clone()
    t_model[1:-1] -= 0.1 * (t_steps[1:-1] - t_steps[2:])
    out = solver(den, prior_sample(schedule, n=2), t_steps, t_model)
    return torch.stack(den.times), t_model, out


@pytest.fixture(scope="session")
def evaluation_times():
    """``times(solver, n) -> (times seen by the network, t_model, output)``."""
    return _evaluation_times


@pytest.fixture(scope="session")
def tiny_unet():
    """A small randomly initialised diffusers UNet2DModel (eps prediction), eval mode, frozen."""
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(
        sample_size=8,
        in_channels=3,
        out_channels=3,
        block_out_channels=(32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
    ).eval()
    unet.requires_grad_(False)
    return unet


DIFFUSERS_BETAS = dict(num_train_timesteps=1000, beta_schedule="linear", beta_start=1e-4, beta_end=0.02)


class DiffusersBridge:
    """Conversions between a diffusers discrete scheduler and our VP-discrete schedule.

    The integer diffusers timestep k is our t = (k + 1) / N_train (``VPDiscrete``), so k = 0,
    diffusers' ``sigma_min`` end and DDIM's final ``alphas_cumprod[0]``, is our t_min.
    """

    betas = DIFFUSERS_BETAS

    @staticmethod
    def t_steps(timesteps: torch.Tensor, schedule: VPDiscrete, final: str = "sigma_min") -> torch.Tensor:
        """Timesteps k -> t = (k + 1) / N_train, followed by the final t_min ("sigma_min") or 0 ("zero")."""
        ts = (timesteps.to(DTYPE) + 1) / schedule.n_train
        return torch.cat([ts, torch.tensor([schedule.t_min if final == "sigma_min" else 0.0], dtype=DTYPE)])

    @staticmethod
    def initial_noise(schedule: NoiseSchedule, t0: torch.Tensor) -> torch.Tensor:
        """Our x at t0: sigma_{t0} z for a fixed z of shape (2, 3, 8, 8), float32."""
        z = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
        return z * schedule.sigma(t0).float()

    @classmethod
    def run_both(cls, unet, sched, solver, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Our ``solver`` and diffusers' ``sched.step`` loop from the same noise: (ours, theirs).

        The grid ends where the scheduler's does: at t_min, or at 0 where its last sigma is 0
        (``final_sigmas_type="zero"``)."""
        schedule = VPDiscrete(sched.alphas_cumprod)
        final = "zero" if float(sched.sigmas[-1]) == 0.0 else "sigma_min"
        t_steps = cls.t_steps(sched.timesteps, schedule, final)
        sigmas = schedule.edm_sigma(t_steps[:-1] if final == "zero" else t_steps).to(sched.sigmas.dtype)
        torch.testing.assert_close(sigmas, sched.sigmas[: len(sigmas)], rtol=1e-6, atol=0)
        x_T = cls.initial_noise(schedule, t_steps[0]).to(dtype)
        with torch.no_grad():
            ours = solver(NetworkDenoiser(lambda x, tm: unet(x, tm).sample, schedule, "eps"), x_T, t_steps)
            x = x_T
            for k in sched.timesteps:
                x = sched.step(unet(x, k).sample, k, x).prev_sample
        return ours, x


@pytest.fixture(scope="session")
def diffusers_bridge():
    return DiffusersBridge


@pytest.fixture(scope="session")
def small_step_gradcheck():
    """``check(solve)``: gradcheck of ``solve(den, x, t_steps)`` w.r.t. the interior times of an
    EDM grid with one lambda step of 0.1 (below 0.2: the Taylor branch of ``phi_tail``)."""

    def check(solve) -> None:
        sch = EDM()
        den = AnalyticDenoiser(MIXTURE, sch)
        x = torch.randn(3, 2, generator=torch.Generator().manual_seed(0), dtype=DTYPE) * sch.sigma_T
        t = edm(sch, 6)
        t = torch.cat([t[:4], t[3:4] * math.exp(-0.1), t[4:]])  # lambda steps 0.1 after t[3]
        interior = t[1:-1].clone().requires_grad_(True)
        assert torch.autograd.gradcheck(lambda ti: solve(den, x, torch.cat([t[:1], ti, t[-1:]])), (interior,),
                                        eps=1e-7, atol=1e-7, rtol=1e-5)

    return check
