import pytest
import torch

from ld3core.heuristics import HEURISTICS, heuristic
from ld3core.parameterization import XIC_BOUND, model_times, project_xic, times_from_xi, xi_from_times, xic_bound
from ld3core.schedules import EDM, RectifiedFlow, VPDiscrete, VPLinear

SCHEDULES = [VPDiscrete.linear(), VPLinear(), EDM(), RectifiedFlow()]


@pytest.mark.parametrize("mode", ["time", "lambda"])
@pytest.mark.parametrize("sch", SCHEDULES, ids=lambda s: s.name)
def test_inverse_reproduces_every_heuristic(sch, mode):
    for h in HEURISTICS:
        t = heuristic(h, sch, 6)
        back = times_from_xi(xi_from_times(t, sch, mode), sch, mode)
        assert torch.allclose(back, t, rtol=1e-10, atol=1e-12), (h, back, t)
        assert back[0] == sch.T and back[-1] == sch.t_min


@pytest.mark.parametrize("mode", ["time", "lambda"])
def test_any_xi_gives_strictly_decreasing_times_with_exact_ends(mode):
    sch = EDM()
    xi = torch.randn(5, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    t = times_from_xi(xi, sch, mode)
    assert t.shape == (5, 8)
    assert (t[:, 1:] < t[:, :-1]).all()
    assert (t[:, 0] == sch.T).all() and (t[:, -1] == sch.t_min).all()


def test_last_logit_is_inert_and_a_shift_changes_nothing():
    sch = VPLinear()
    xi = torch.randn(7, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_(True)
    t = times_from_xi(xi, sch)
    t.sum().backward()
    assert xi.grad[-1].abs() < 1e-12
    assert xi.grad[:-1].abs().max() > 1e-6
    moved = xi.detach().clone()
    moved[-1] += 5.0
    assert torch.allclose(times_from_xi(moved, sch), t.detach())
    assert torch.allclose(times_from_xi(xi.detach() + 3.0, sch), t.detach())


@pytest.mark.parametrize("mode", ["time", "lambda"])
def test_times_gradient_matches_finite_differences(mode):
    sch = VPLinear()
    xi = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    w = torch.randn(6, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    def f(v):
        return (times_from_xi(v, sch, mode) * w).sum()
    x = xi.clone().requires_grad_(True)
    f(x).backward()
    eps = 1e-6
    fd = torch.stack([(f(xi + eps * e) - f(xi - eps * e)) / (2 * eps) for e in torch.eye(6, dtype=torch.float64)])
    assert torch.allclose(x.grad, fd, rtol=1e-6, atol=1e-9)


@pytest.mark.parametrize("mode", ["time", "lambda"])
def test_decoupled_times_are_bounded_monotone_with_fixed_ends(mode):
    sch = VPDiscrete.linear()
    t = heuristic("logsnr", sch, 5)
    huge = torch.full((6,), 10.0, dtype=torch.float64)
    for xic in (huge, -huge, torch.tensor([0.0, 1, -1, 1, -1, 0], dtype=torch.float64) * 10):
        tc = model_times(t, xic, sch, mode)
        assert tc[0] == sch.T and tc[-1] == sch.t_min
        assert (tc[1:] < tc[:-1]).all(), tc
    # The bound is half the smallest gap measured in the space of the times, not of the logits.
    u = t if mode == "time" else sch.lam(t)
    gap = (u[:-1] - u[1:]).abs().min()
    assert torch.allclose(xic_bound(t, sch, mode), XIC_BOUND * gap) and XIC_BOUND < 0.5
    small = torch.tensor([0.0, 0.1, -0.1, 0.2, 0.0, 0.0], dtype=torch.float64) * float(gap)
    tc = model_times(t, small, sch, mode)
    assert torch.allclose((tc if mode == "time" else sch.lam(tc))[1:-1], u[1:-1] + small[1:-1], rtol=1e-9, atol=1e-12)


def test_neighbours_pushed_together_on_the_smallest_gap_never_meet():
    sch = VPLinear()
    t = torch.tensor([1.0, 0.6, 0.5, 0.45, 0.2, 0.001], dtype=torch.float64)  # smallest gap: steps 2-3
    tc = model_times(t, torch.tensor([0.0, 0, -10, 10, 0, 0], dtype=torch.float64), sch)
    assert (tc[1:] < tc[:-1]).all(), tc
    assert float(tc[2] - tc[3]) > 0.01 * 0.05


def test_zero_offsets_leave_times_unchanged_and_projection_clamps():
    sch = EDM()
    t = heuristic("edm", sch, 4)
    assert torch.allclose(model_times(t, torch.zeros(5, dtype=torch.float64), sch), t)
    p = project_xic(torch.full((5,), 1e3, dtype=torch.float64), t, sch)
    assert torch.allclose(p, xic_bound(t, sch).expand(5))


def test_non_monotone_times_are_refused():
    with pytest.raises(ValueError, match="strictly decreasing"):
        xi_from_times(torch.tensor([1.0, 0.5, 0.6, 0.001], dtype=torch.float64), VPLinear())
