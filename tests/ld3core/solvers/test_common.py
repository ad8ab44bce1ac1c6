"""What every solver shares (``_common.check_times``): grids ending at sigma = 0, finiteness on
every valid grid, the ValueError of an invalid one."""

from __future__ import annotations

import pytest
import torch

from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser
from ld3core.heuristics import HEURISTICS, edm, logsnr
from ld3core.schedules import DTYPE, EDM, RectifiedFlow, VPCosine, VPDiscrete, VPLinear
from ld3core.solvers import SOLVERS, DeviceChecks, final_grid
from ld3core.solvers._common import solve

SCHEDULES = {"vp_discrete": VPDiscrete.linear, "vp_linear": VPLinear, "vp_cosine": VPCosine, "edm": EDM,
             "flow": RectifiedFlow}
MIXTURE = BUILTIN_MIXTURES["gmm2d"]()


def setup(schedule_name: str, n_samples: int = 3, seed: int = 0):
    sch = SCHEDULES[schedule_name]()
    x = torch.randn(n_samples, 2, generator=torch.Generator().manual_seed(seed), dtype=DTYPE) * sch.sigma_T
    return sch, AnalyticDenoiser(MIXTURE, sch), x


def decoupled(t: torch.Tensor) -> torch.Tensor:
    """Model times moved 20% into each gap (the last one stays: it is never used)."""
    tm = t.clone()
    tm[:-1] -= 0.2 * (t[:-1] - t[1:])
    tm[0] = t[0]
    return tm


class Recording:
    """A denoiser that records every call's input and output."""

    def __init__(self, inner) -> None:
        self.inner, self.schedule, self.calls = inner, inner.schedule, []

    def __call__(self, x, t):
        out = self.inner(x, t)
        self.calls.append((x, t, out))
        return out


@pytest.mark.parametrize("schedule_name", SCHEDULES)
@pytest.mark.parametrize("name", SOLVERS)
def test_every_solver_is_finite_on_every_grid(name, schedule_name):
    """Every heuristic grid at N = 1..4 and 14..16 (both sides of DPM-Solver++'s N < 15 rule) and
    logSNR steps at N = 100 and 200, ending at t_min or at 0, with and without decoupled model
    times, per-sample grids, float32 (float64 at N = 200). The old code returned NaN for every VP grid ending at 0 and inf from
    dpmpp_2m/3m on EDM grids ending at 0 for N >= 15."""
    sch, den, x = setup(schedule_name)
    fn = SOLVERS[name].fn
    cases = []
    for n in (1, 2, 3, 4, 14, 15, 16):
        grids = [HEURISTICS[h](sch, n) for h in HEURISTICS]
        for final in ("sigma_min", "zero"):
            cases += [(final_grid(t, final), None, torch.float32) for t in grids]
            cases.append((final_grid(grids[0], final), decoupled(grids[0]), torch.float32))
            cases.append((final_grid(torch.stack(grids[:3], 1), final), None, torch.float32))
    cases += [(final_grid(logsnr(sch, 100), final), None, torch.float32) for final in ("sigma_min", "zero")]
    cases.append((final_grid(logsnr(sch, 200), "zero"), None, torch.float64))
    for t, tm, dtype in cases:
        out = fn(den, x.to(dtype), t, tm)
        assert out.dtype == dtype and bool(torch.isfinite(out).all()), (name, schedule_name, t.shape, tm is not None, dtype)


@pytest.mark.parametrize("schedule_name", SCHEDULES)
@pytest.mark.parametrize("name", SOLVERS)
@pytest.mark.parametrize("n", [1, 4, 16])
def test_the_last_step_to_zero_is_the_data_prediction_of_the_last_evaluation(name, schedule_name, n):
    """Ending at 0 changes the last step only: the same evaluations (inputs bit for bit) as the grid
    ending at t_min, and the result is the data prediction of the last one, exactly: the
    first-order step x_t = (sigma_t/sigma_s) x_s + alpha_t (1 - e^{-h}) D at sigma_t = 0, alpha_t = 1."""
    sch, den, x = setup(schedule_name)
    t = edm(sch, n)
    tm = decoupled(t)
    to_min, to_zero = Recording(den), Recording(den)
    SOLVERS[name].fn(to_min, x, t, tm)
    out = SOLVERS[name].fn(to_zero, x, final_grid(t, "zero"), tm)
    assert len(to_zero.calls) == len(to_min.calls) == SOLVERS[name].nfe(n)
    for (x_a, t_a, _), (x_b, t_b, _) in zip(to_min.calls, to_zero.calls):
        assert torch.equal(x_a, x_b) and torch.equal(t_a, t_b)
    x_last, t_last, d_last = to_zero.calls[-1]
    assert torch.equal(t_last, tm[-2]) and torch.equal(out, d_last)


@pytest.mark.parametrize("name", SOLVERS)
def test_gradients_through_a_grid_ending_at_zero_are_finite(name):
    """LD3 trains through the final step to zero: the interior times and the model times get finite
    gradients, t_model[-1] (never evaluated) none."""
    for schedule_name in ("vp_discrete", "edm", "flow"):
        sch, den, x = setup(schedule_name)
        t = logsnr(sch, 5)
        interior = t[1:-1].clone().requires_grad_(True)
        tm = decoupled(t).requires_grad_(True)
        grid = final_grid(torch.cat([t[:1], interior, t[-1:]]), "zero")
        out = SOLVERS[name].fn(den, x, grid, tm)
        g_int, g_tm = torch.autograd.grad(out.square().sum(), (interior, tm))
        assert bool(torch.isfinite(g_int).all() and torch.isfinite(g_tm).all()), (name, schedule_name)
        assert bool((g_int != 0).all()) and float(g_tm[-1]) == 0.0


@pytest.mark.parametrize("name", SOLVERS)
def test_zero_length_steps_are_finite(name):
    """A repeated time is a zero-length step: x stays, and a multistep solver takes the first-order
    update wherever its ratios would divide by that zero (``_common.defined``). diffusers' grids
    that end at timestep 0 and then at sigma_min repeat the last time; a collapsing LD3 step
    repeats an interior one, in some samples of a per-sample grid only. The old DPM-Solver++ 3M
    and UniPC returned NaN for both."""
    sch, den, x = setup("vp_discrete")
    for n in (3, 15, 16):
        t = logsnr(sch, n)
        last = torch.cat([t[:-1], t[-2:-1]])  # t_{N-1} twice
        inner = torch.cat([t[:2], t[1:-1]])  # t_1 twice
        mixed = torch.stack([t, inner, final_grid(inner, "sigma_min")], 1)
        for grid in (last, inner, final_grid(inner, "zero"), mixed):
            ts = grid.clone().requires_grad_(True)
            out = SOLVERS[name].fn(den, x, ts)
            (g,) = torch.autograd.grad(out.square().sum(), ts)
            assert bool(torch.isfinite(out).all() and torch.isfinite(g).all()), (name, n, grid.shape)
        assert torch.equal(SOLVERS[name].fn(den, x, mixed)[:1], SOLVERS[name].fn(den, x[:1], t))  # other samples untouched
    for fn in (SOLVERS["dpmpp_3m"].fn, SOLVERS["unipc"].fn):
        assert bool(torch.isfinite(fn(den, x, last, lower_order_final=False)).all())


def test_a_zero_length_step_leaves_x_as_it_is():
    """Euler over a repeated time: the same result as without the repeat, bit for bit (one more evaluation)."""
    sch, den, x = setup("edm")
    t = edm(sch, 6)
    for repeated in (torch.cat([t[:3], t[2:]]), torch.cat([t, t[-1:]])):
        assert torch.equal(SOLVERS["euler"].fn(den, x, repeated), SOLVERS["euler"].fn(den, x, t))


@pytest.mark.parametrize(("grid", "message"), [
    ([1.0, float("nan"), 0.001], r"t_steps must be finite; t_steps\[1\] = nan"),
    ([1.0, 0.2, 0.5, 0.001], r"t_steps must decrease; t_steps\[1\] = 0.2 is followed by t_steps\[2\] = 0.5"),
    ([1.0, 0.5, 0.0, 0.0], r"t_steps\[2\] = 0.0 is outside the vp_discrete schedule on \[0.001, 1\].*only the last time may be 0"),
    ([1.0, 0.5, -0.1], r"t_steps\[2\] = -0.1 is outside the vp_discrete schedule"),
])
def test_an_invalid_grid_is_a_value_error_naming_it(grid, message):
    sch, den, x = setup("vp_discrete")
    for spec in SOLVERS.values():
        with pytest.raises(ValueError, match=message):
            spec.fn(den, x, torch.tensor(grid, dtype=DTYPE))


@pytest.mark.parametrize(("schedule_name", "grid", "index"), [
    ("flow", [1.0, 0.5, 0.001], 0),  # alpha = 1 - t = 0
    ("vp_cosine", [1.01, 0.5, 0.001], 0),  # past the cosine's end
    ("edm", [80.0, 40.0, -1.0], 2),  # sigma = t < 0
])
def test_times_where_the_schedule_is_undefined_are_refused(schedule_name, grid, index):
    sch, den, x = setup(schedule_name)
    with pytest.raises(ValueError, match=rf"t_steps\[{index}\] = {grid[index]} is outside the {sch.name} schedule"):
        SOLVERS["euler"].fn(den, x, torch.tensor(grid, dtype=DTYPE))


def test_model_times_are_checked_except_the_unused_last_one():
    sch, den, x = setup("edm")
    t = edm(sch, 4)
    tm = t.clone()
    tm[-1] = float("nan")  # never evaluated
    assert bool(torch.isfinite(SOLVERS["dpmpp_2m"].fn(den, x, t, tm)).all())
    tm[2] = -1.0
    with pytest.raises(ValueError, match=r"t_model\[2\] = -1.0 is not a time of the edm schedule"):
        SOLVERS["dpmpp_2m"].fn(den, x, t, tm)


def test_per_sample_grids_must_end_alike():
    sch, den, x = setup("edm")
    t = torch.stack([edm(sch, 4), final_grid(edm(sch, 4), "zero"), edm(sch, 4)], 1)
    with pytest.raises(ValueError, match="the last time is 0 for some samples and not for others"):
        SOLVERS["unipc"].fn(den, x, t)


def test_the_vp_grid_ending_at_zero_matches_the_limit_of_small_final_times():
    """A continuous VP grid ending at t = 1e-7 (sigma ~ 3e-4) is within that sigma of the one ending at 0."""
    sch, den, x = setup("vp_linear")
    t = logsnr(sch, 6)
    near = torch.cat([t[:-1], torch.tensor([1e-7], dtype=DTYPE)])
    for name in ("euler", "heun", "dpmpp_2m", "unipc"):
        fn = SOLVERS[name].fn
        # Lower-order final steps (diffusers' default at N < 15): the last step is first order in both.
        diff = (fn(den, x, final_grid(t, "zero")) - fn(den, x, near)).abs().max()
        assert float(diff) < 10 * float(sch.sigma(1e-7)), (name, float(diff))


# Checks kept on the device (``DeviceChecks``): what a training iteration captured as a CUDA graph runs.
def _grids(sch):
    """Valid grids: plain, decoupled, with zero-length steps, ending at 0, per sample."""
    t = logsnr(sch, 6)
    inner = torch.cat([t[:2], t[1:-1]])
    return [(t, None), (t, decoupled(t)), (inner, None), (final_grid(t, "zero"), None),
            (torch.stack([t, inner, t], 1), torch.stack([decoupled(t), inner, t], 1))]


def _run(spec, den, x, grid, tm, checks):
    ts, xs = grid.clone().requires_grad_(True), x.clone().requires_grad_(True)
    tms = None if tm is None else tm.clone().requires_grad_(True)
    kw = {} if checks is None else {"on_device": checks}
    out = solve(spec.steps, den, xs, ts, tms, **dict(spec.options), **kw)
    return out, torch.autograd.grad(out.square().sum(), [v for v in (xs, ts, tms) if v is not None])


@pytest.mark.parametrize("name", SOLVERS)
def test_checks_on_the_device_change_no_output_and_no_gradient(name):
    """Given what the host would read (the end, whether a step has zero length), a solver with
    ``on_device`` reads nothing and computes the checked run's output and gradients bit for bit."""
    sch, den, x = setup("vp_discrete")
    spec = SOLVERS[name]
    for grid, tm in _grids(sch):
        zero_steps = bool((grid[1:] == grid[:-1]).any())
        checks = DeviceChecks(to_zero=bool(grid[-1].eq(0).all()), zero_steps=zero_steps)
        (out_a, g_a), (out_b, g_b) = _run(spec, den, x, grid, tm, None), _run(spec, den, x, grid, tm, checks)
        assert checks.valid is not None and bool(checks.valid.all()) and checks.valid.shape == grid.shape[1:]
        assert torch.equal(out_a, out_b) and all(torch.equal(a, b) for a, b in zip(g_a, g_b)), (name, grid.shape)


@pytest.mark.parametrize("name", SOLVERS)
def test_allowing_zero_length_steps_on_a_grid_without_them_changes_no_output(name):
    """``zero_steps=True`` where no step has zero length (a target's integer timesteps that did not
    repeat): the same output; gradients equal to rounding (UniPC sums its step's gradient in another order)."""
    sch, den, x = setup("vp_discrete")
    spec = SOLVERS[name]
    t = logsnr(sch, 6)
    (out_a, g_a), (out_b, g_b) = _run(spec, den, x, t, None, None), _run(spec, den, x, t, None, DeviceChecks(False, True))
    assert torch.equal(out_a, out_b)
    for a, b in zip(g_a, g_b):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=0)
        assert torch.equal(a, b) or name.startswith("unipc")


def test_a_zero_length_step_not_allowed_is_invalid():
    sch, den, x = setup("vp_discrete")
    t = logsnr(sch, 6)
    inner = torch.stack([t, torch.cat([t[:2], t[1:-1]])], 1)
    checks = DeviceChecks(to_zero=False)
    SOLVERS["euler"].fn(den, x[:2], inner, on_device=checks)
    assert checks.valid is not None and checks.valid.tolist() == [True, False]


@pytest.mark.parametrize(("column", "rule"), [
    (0, "finite"), (1, "decreasing"), (2, "in_schedule"), (3, "model_times"), (4, "end"),
])
def test_checks_on_the_device_flag_the_invalid_samples(column, rule):
    """Each rule of ``check_times``, broken in one sample of a per-sample grid, is False there only."""
    sch, den, x = setup("vp_discrete", n_samples=6)
    t = logsnr(sch, 5).unsqueeze(1).repeat(1, 6)
    tm = t.clone()
    broken = {"finite": (t, 2, float("nan")), "decreasing": (t, 2, float(t[1, 0]) * 1.5),
              "in_schedule": (t, 3, -0.5), "model_times": (tm, 2, -1.0), "end": (t, 5, 0.0)}
    grid, i, value = broken[rule]
    grid[i, column] = value
    checks = DeviceChecks(to_zero=False)
    SOLVERS["dpmpp_2m"].fn(den, x, t, tm, on_device=checks)
    assert checks.valid is not None
    assert checks.valid.tolist() == [j != column for j in range(6)]


def test_checks_on_the_device_refuse_only_shapes():
    sch, den, x = setup("edm")
    with pytest.raises(ValueError, match="per-sample t_steps has 2 columns for a batch of 3"):
        SOLVERS["euler"].fn(den, x, edm(sch, 4).unsqueeze(1).repeat(1, 2), on_device=DeviceChecks(to_zero=False))
