"""Noise schedules: inverse maps, prior scale, VP identities, monotone lambda, the discrete table, configs."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ld3core.schedules import (
    DTYPE,
    EDM,
    SCHEDULES,
    RectifiedFlow,
    VPCosine,
    VPDiscrete,
    VPLinear,
    interp,
    schedule_from_config,
)


def _all_schedules():
    return [VPDiscrete.linear(), VPDiscrete.scaled_linear(), VPLinear(), VPCosine(), EDM(), RectifiedFlow()]


ALL = _all_schedules()
VP = [s for s in ALL if s.name.startswith("vp")]


def _grid(schedule, n: int = 1001) -> torch.Tensor:
    return torch.linspace(schedule.t_min, schedule.T, n, dtype=DTYPE)


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: s.name)
def test_t_from_lambda_inverts_lambda(schedule):
    t = _grid(schedule)
    torch.testing.assert_close(schedule.t_from_lambda(schedule.lam(t)), t, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(schedule.t_from_edm_sigma(schedule.edm_sigma(t)), t, rtol=1e-10, atol=1e-12)
    if hasattr(schedule, "t_from_sigma"):
        torch.testing.assert_close(schedule.t_from_sigma(schedule.sigma(t)), t, rtol=1e-8, atol=1e-12)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        (VPLinear(), math.sqrt(-math.expm1(-(0.25 * 19.9 + 0.05) * 2))),  # alpha_1^2 = exp(-int_0^1 beta)
        (VPCosine(), math.sqrt(1 - (math.cos((0.9946 + 0.008) / 1.008 * math.pi / 2) / math.cos(0.008 / 1.008 * math.pi / 2)) ** 2)),
        (EDM(), 80.0),
        (RectifiedFlow(), 0.999),
        (VPDiscrete.linear(), math.sqrt(1 - math.prod(1 - (1e-4 + k * (0.02 - 1e-4) / 999) for k in range(1000)))),
    ],
    ids=lambda v: getattr(v, "name", ""),
)
def test_sigma_T(schedule, expected):
    assert schedule.sigma_T == pytest.approx(expected, rel=1e-10)
    assert isinstance(schedule.sigma_T, float)


@pytest.mark.parametrize("schedule", VP, ids=lambda s: s.name)
def test_vp_is_variance_preserving(schedule):
    t = _grid(schedule)
    torch.testing.assert_close(schedule.alpha(t) ** 2 + schedule.sigma(t) ** 2, torch.ones_like(t), rtol=0, atol=1e-12)


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: s.name)
def test_lambda_strictly_decreasing_and_alpha_sigma_consistent(schedule):
    t = _grid(schedule, 5001)
    lam = schedule.lam(t)
    assert bool((lam[1:] < lam[:-1]).all())
    torch.testing.assert_close(lam, torch.log(schedule.alpha(t) / schedule.sigma(t)), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(schedule.edm_sigma(t), schedule.sigma(t) / schedule.alpha(t), rtol=1e-12, atol=0)


def test_vp_discrete_reproduces_alphas_cumprod_and_indices():
    betas = torch.linspace(1e-4, 0.02, 1000, dtype=torch.float32)
    ac32 = torch.cumprod(1 - betas, 0)  # as a diffusers scheduler stores it
    schedule = VPDiscrete(ac32)
    k = torch.arange(1000)
    t = (k + 1).to(DTYPE) / 1000
    torch.testing.assert_close(schedule.alpha(t) ** 2, ac32.to(DTYPE), rtol=1e-14, atol=0)
    torch.testing.assert_close(schedule.sigma(t) ** 2, 1 - ac32.to(DTYPE), rtol=1e-12, atol=0)
    assert schedule.T == 1.0 and schedule.t_min == 1e-3
    assert torch.equal(schedule.model_time(t).round().long(), k)
    torch.testing.assert_close(schedule.model_time(t), k.to(DTYPE), rtol=0, atol=1e-9)
    # Between table entries log alpha is linear in t.
    mid = schedule.log_alpha(t[:-1] + 0.5e-3)
    torch.testing.assert_close(mid, 0.5 * (schedule.log_alpha(t[:-1]) + schedule.log_alpha(t[1:])), rtol=1e-12, atol=0)


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: s.name)
def test_lambda_gradient_is_finite_and_correct(schedule):
    # The end points and points inside (on the knots, for the discrete table).
    inside = _grid(schedule, 37)[1:-1]
    t = torch.cat([torch.tensor([schedule.t_min, schedule.T], dtype=DTYPE), inside]).requires_grad_(True)
    (grad,) = torch.autograd.grad(schedule.lam(t).sum(), t)
    assert bool(torch.isfinite(grad).all()) and bool((grad < 0).all())
    # Central differences where lambda is smooth (between the knots of a discrete table).
    if isinstance(schedule, VPDiscrete):
        inside = (torch.floor(inside * schedule.n_train) + 0.37) / schedule.n_train
    inside.requires_grad_(True)
    (g,) = torch.autograd.grad(schedule.lam(inside).sum(), inside)
    h = 1e-7 * inside.detach().abs()
    fd = (schedule.lam(inside.detach() + h) - schedule.lam(inside.detach() - h)) / (2 * h)
    torch.testing.assert_close(g, fd, rtol=1e-5, atol=0)


@pytest.mark.parametrize("schedule", ALL, ids=lambda s: s.name)
def test_config_round_trips_through_json(schedule):
    cfg = json.loads(json.dumps(schedule.config()))
    rebuilt = schedule_from_config(cfg)
    assert type(rebuilt) is type(schedule)
    assert rebuilt.config() == schedule.config()
    assert (rebuilt.T, rebuilt.t_min) == (schedule.T, schedule.t_min)
    t = _grid(schedule, 101)
    assert torch.equal(rebuilt.lam(t), schedule.lam(t))


def test_config_keeps_non_default_fields():
    rebuilt = schedule_from_config(VPLinear(beta_min=0.2, beta_max=10.0, t_min=1e-4).config())
    assert (rebuilt.beta_min, rebuilt.beta_max, rebuilt.t_min) == (0.2, 10.0, 1e-4)


def test_registry_names_match():
    for name, cls in SCHEDULES.items():
        instance = VPDiscrete.linear() if cls is VPDiscrete else cls()
        assert instance.name == name


def test_unknown_config_refused():
    with pytest.raises(ValueError):
        schedule_from_config({"name": "vp_exotic"})
    with pytest.raises(ValueError):
        schedule_from_config({})


@pytest.mark.parametrize(
    "alphas_cumprod",
    [
        [0.9],  # too short
        [0.9, 0.95, 0.5],  # not decreasing
        [0.9, 0.9, 0.5],  # not strictly decreasing
        [1.0, 0.9, 0.5],  # alpha_0 = 1: lambda infinite
        [0.9, 0.5, 0.0],  # alpha = 0: lambda infinite
        [0.9, 0.5, -0.1],
    ],
)
def test_invalid_alphas_cumprod_refused(alphas_cumprod):
    with pytest.raises(ValueError):
        VPDiscrete(torch.tensor(alphas_cumprod, dtype=DTYPE))


def test_interp_matches_numpy_and_extends_linearly():
    np = pytest.importorskip("numpy")
    xp = torch.tensor([0.0, 1.0, 3.0, 4.0], dtype=DTYPE)
    fp = torch.tensor([1.0, -1.0, 2.0, 0.0], dtype=DTYPE)
    x = torch.linspace(0.0, 4.0, 41, dtype=DTYPE)
    torch.testing.assert_close(interp(x, xp, fp), torch.from_numpy(np.interp(x.numpy(), xp.numpy(), fp.numpy())))
    torch.testing.assert_close(interp(torch.tensor([-1.0, 5.0], dtype=DTYPE), xp, fp), torch.tensor([3.0, -2.0], dtype=DTYPE))
