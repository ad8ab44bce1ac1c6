"""Denoiser adapters, classifier-free guidance and rematerialization."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ld3core.denoisers import GuidedDenoiser, NetworkDenoiser, Rematerialized, to_x0
from ld3core.schedules import DTYPE, EDM, RectifiedFlow, VPCosine, VPDiscrete, VPLinear

SCHEDULES = [VPDiscrete.linear(), VPLinear(), VPCosine(), EDM(), RectifiedFlow()]


def _targets(alpha: torch.Tensor, sigma: torch.Tensor, x0: torch.Tensor, eps: torch.Tensor) -> dict[str, torch.Tensor]:
    """What an exact network of each prediction type outputs."""
    return {"eps": eps, "x0": x0, "v": alpha * eps - sigma * x0, "flow": eps - x0}


def _pair(b: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(b, 2, 4, generator=g, dtype=DTYPE), torch.randn(b, 2, 4, generator=g, dtype=DTYPE)


# Flow velocity (eps - x0) is defined for the rectified-flow schedule only.
ADAPTER_CASES = [(s, p) for s in SCHEDULES for p in ("eps", "x0", "v", "flow") if p != "flow" or isinstance(s, RectifiedFlow)]


@pytest.mark.parametrize("per_sample", [False, True])
@pytest.mark.parametrize(("schedule", "prediction"), ADAPTER_CASES, ids=lambda v: getattr(v, "name", v))
def test_adapter_recovers_x0(schedule, prediction, per_sample):
    x0, eps = _pair()
    t = torch.tensor([0.9, 0.3, 0.05], dtype=DTYPE) * schedule.T if per_sample else torch.tensor(0.4 * schedule.T, dtype=DTYPE)
    shape = (-1, 1, 1) if per_sample else ()
    alpha, sigma = schedule.alpha(t).reshape(shape), schedule.sigma(t).reshape(shape)
    x = alpha * x0 + sigma * eps
    seen = []

    def net(x_in: torch.Tensor, tm: torch.Tensor) -> torch.Tensor:
        seen.append(tm)
        return _targets(alpha, sigma, x0, eps)[prediction]

    out = NetworkDenoiser(net, schedule, prediction)(x, t)
    torch.testing.assert_close(out, x0, rtol=1e-9, atol=1e-9)
    # The network sees the schedule's model time, one float32 value per sample.
    (tm,) = seen
    assert tm.dtype == torch.float32 and tm.shape == (3,)
    torch.testing.assert_close(tm, schedule.model_time(t).float().expand(3))


def test_model_time_of_discrete_vp_is_the_training_index():
    schedule = VPDiscrete.linear()
    seen = []
    den = NetworkDenoiser(lambda x, tm: seen.append(tm) or torch.zeros_like(x), schedule, "eps")
    den(torch.zeros(2, 3), torch.tensor([1.0, 0.5], dtype=DTYPE))
    assert seen[0].tolist() == [999.0, 499.0]


def test_flow_needs_rectified_flow_schedule():
    x = torch.zeros(1, 2, dtype=DTYPE)
    with pytest.raises(ValueError):
        to_x0(x, x, torch.tensor(0.5, dtype=DTYPE), VPLinear(), "flow")


def test_bad_prediction_type_raises():
    with pytest.raises(ValueError):
        NetworkDenoiser(lambda x, tm: x, EDM(), "score")
    with pytest.raises(ValueError):
        to_x0(torch.zeros(1), torch.zeros(1), torch.tensor(1.0), EDM(), "score")


class _CondNet:
    """An eps net whose output depends on x, t and a per-sample condition; counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, x: torch.Tensor, tm: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return torch.tanh(x) * (1 + 0.01 * tm.reshape(-1, 1)) + cond.reshape(-1, 1)


@pytest.mark.parametrize("per_sample", [False, True])
def test_guidance_combines_x0_with_one_call(per_sample):
    schedule = VPLinear()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 5, generator=g, dtype=DTYPE)
    cond, uncond = torch.tensor([1.0, 2.0, 3.0], dtype=DTYPE), torch.zeros(3, dtype=DTYPE)
    t = torch.tensor([0.8, 0.5, 0.2], dtype=DTYPE) if per_sample else torch.tensor(0.5, dtype=DTYPE)
    scale = 3.5

    net = _CondNet()
    guided = GuidedDenoiser(net, schedule, "eps", cond, uncond, scale)(x, t)
    assert net.calls == 1

    d_c = NetworkDenoiser(net, schedule, "eps", cond=(cond,))(x, t)
    d_u = NetworkDenoiser(net, schedule, "eps", cond=(uncond,))(x, t)
    torch.testing.assert_close(guided, d_u + scale * (d_c - d_u), rtol=1e-12, atol=1e-12)
    assert float((d_c - d_u).abs().min()) > 1e-3  # the condition matters, so a swap would be caught


class _TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.inp = nn.Linear(5, 16)
        self.out = nn.Linear(16, 4)
        self.calls = 0

    def forward(self, x: torch.Tensor, tm: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        return self.out(torch.tanh(self.inp(torch.cat([x, tm.reshape(-1, 1)], 1))))


def test_rematerialized_same_values_and_gradients():
    torch.manual_seed(0)
    net = _TinyNet()
    den = NetworkDenoiser(net, VPLinear(), "eps")
    remat = Rematerialized(den)
    assert remat.schedule is den.schedule
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, generator=g)
    t = torch.tensor([0.9, 0.4, 0.1], dtype=DTYPE)
    w = torch.randn(3, 4, generator=g)

    def grads(d):
        xx, tt = x.clone().requires_grad_(True), t.clone().requires_grad_(True)
        net.zero_grad()
        out = d(xx, tt)
        (out * w).sum().backward()
        return out.detach(), xx.grad, tt.grad, [p.grad.clone() for p in net.parameters()]

    net.calls = 0
    plain = grads(den)
    assert net.calls == 1
    rem = grads(remat)
    assert net.calls == 3  # forward, then once more in the backward pass: recomputed, not stored
    torch.testing.assert_close(rem[0], plain[0], rtol=0, atol=0)
    torch.testing.assert_close(rem[1], plain[1], rtol=0, atol=0)
    torch.testing.assert_close(rem[2], plain[2], rtol=0, atol=0)
    for a, b in zip(rem[3], plain[3]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert float(plain[2].abs().min()) > 0  # t carries gradient (LD3 learns the times)

    with torch.no_grad():
        torch.testing.assert_close(remat(x, t), den(x, t), rtol=0, atol=0)


def test_guided_network_binds_per_sample_conditions():
    from ld3core.denoisers import GuidedNetwork, conditioned

    schedule = VPLinear()
    g = torch.Generator().manual_seed(2)
    x = torch.randn(3, 5, generator=g, dtype=DTYPE)
    t = torch.tensor(0.5, dtype=DTYPE)
    cond, null = torch.tensor([1.0, 2.0, 3.0], dtype=DTYPE), torch.tensor(0.0, dtype=DTYPE)
    net = _CondNet()
    family = GuidedNetwork(net, schedule, "eps", null, 2.5)
    expected = GuidedDenoiser(net, schedule, "eps", cond, torch.zeros(3, dtype=DTYPE), 2.5)(x, t)
    torch.testing.assert_close(conditioned(family, cond)(x, t), expected, rtol=0, atol=0)

    # Scale 1 is the conditional model alone: one call on the batch, no unconditional half.
    net.calls = 0
    plain = GuidedNetwork(net, schedule, "eps", null, 1.0).bind(cond)(x, t)
    assert net.calls == 1
    torch.testing.assert_close(plain, NetworkDenoiser(net, schedule, "eps", cond=(cond,))(x, t), rtol=0, atol=0)

    with pytest.raises(ValueError, match=r"shape \(2,\) per sample; this model takes \(\)"):
        family.bind(torch.zeros(3, 2, dtype=DTYPE))


def test_conditioned_refuses_mismatched_conditioning():
    from ld3core.denoisers import GuidedNetwork, conditioned

    plain = NetworkDenoiser(lambda x, tm: x, EDM(), "x0")
    family = GuidedNetwork(lambda x, tm, c: x, EDM(), "x0", torch.tensor(0), 2.0)
    assert conditioned(plain, None) is plain
    with pytest.raises(ValueError, match="needs per-sample conditions"):
        conditioned(family, None)
    with pytest.raises(ValueError, match="unconditional denoiser"):
        conditioned(plain, torch.tensor([1, 2]))
