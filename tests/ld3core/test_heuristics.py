"""Step heuristics: N+1 strictly decreasing times with exact end points, each uniform in its own variable."""

from __future__ import annotations

import pytest
import torch

from ld3core.config import HEURISTIC_NAMES
from ld3core.heuristics import HEURISTICS, edm, heuristic, logsnr, time_quadratic, time_uniform
from ld3core.schedules import DTYPE, EDM, RectifiedFlow, VPCosine, VPDiscrete, VPLinear

SCHEDULES = [VPDiscrete.linear(), VPDiscrete.scaled_linear(), VPLinear(), VPCosine(), EDM(), RectifiedFlow()]


def _is_uniform(v: torch.Tensor) -> bool:
    d = v[1:] - v[:-1]
    return bool(torch.allclose(d, d.mean().expand_as(d), rtol=1e-8, atol=1e-10 * float(v.abs().max())))


@pytest.mark.parametrize("n", [1, 2, 7, 50])
@pytest.mark.parametrize("name", sorted(HEURISTICS))
@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
def test_strictly_decreasing_with_exact_ends(schedule, name, n):
    t = heuristic(name, schedule, n)
    assert t.shape == (n + 1,) and t.dtype == DTYPE
    assert float(t[0]) == schedule.T and float(t[-1]) == schedule.t_min
    assert bool((t[1:] < t[:-1]).all())


@pytest.mark.parametrize("schedule", SCHEDULES, ids=lambda s: s.name)
def test_each_is_uniform_in_its_variable(schedule):
    n = 10
    assert _is_uniform(schedule.lam(logsnr(schedule, n)))
    assert _is_uniform(schedule.edm_sigma(edm(schedule, n)) ** (1 / 7))
    assert _is_uniform(time_uniform(schedule, n))
    assert _is_uniform(time_quadratic(schedule, n).sqrt())
    # ... and not uniform in the others' variables (the checks above can fail).
    assert not _is_uniform(schedule.lam(edm(schedule, n)))
    assert not _is_uniform(time_quadratic(schedule, n))


def test_edm_matches_karras_for_edm_schedule():
    """For EDM (t = sigma) the heuristic is Karras et al.'s eq. 5 with rho = 7."""
    n, rho = 18, 7.0
    i = torch.arange(n + 1, dtype=DTYPE)
    ref = (80.0 ** (1 / rho) + i / n * (0.002 ** (1 / rho) - 80.0 ** (1 / rho))) ** rho
    torch.testing.assert_close(edm(EDM(), n), ref, rtol=1e-12, atol=0)


def test_unknown_name_and_bad_n_raise():
    with pytest.raises(ValueError):
        heuristic("karras_typo", EDM(), 5)
    with pytest.raises(ValueError):
        heuristic("logsnr", EDM(), 0)


def test_the_configs_names_are_the_heuristics_in_order():
    """ld3core.config names them without importing torch (a job's default candidates, the API's enum)."""
    assert tuple(HEURISTICS) == HEURISTIC_NAMES
