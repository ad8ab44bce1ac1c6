"""ld3core.solvers itself: the final-step rule of a stored schedule (``final_grid``,
``SolverSpec.ending``) and the pin of every solver's output on grids that do not end at 0."""

from __future__ import annotations

import hashlib

import pytest
import torch

from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser
from ld3core.heuristics import HEURISTICS, edm
from ld3core.schedules import DTYPE, EDM, RectifiedFlow, VPCosine, VPDiscrete, VPLinear
from ld3core.solvers import FINALS, SOLVERS, check_final, final_grid

SCHEDULES = {"vp_discrete": VPDiscrete.linear, "vp_linear": VPLinear, "vp_cosine": VPCosine, "edm": EDM,
             "flow": RectifiedFlow}

# sha256 (first 16 hex digits) of every output of ``_pinned_outputs``, computed with the solvers
# as they were before grids could end at 0 (commit 64d7706). Grids that do not end at 0 must give
# these bits: LD3 results measured before that change stay valid. Float64 and float32 on this
# project's CPU build of torch; another BLAS / SIMD build may round differently.
PINNED = {
    "euler": "1eb67a9bb3d8b0ba",
    "heun": "bcd9ea0dacf16b49",
    "dpmpp_2m": "b5a4e5351099d04f",
    "dpmpp_3m": "8a3b84ea39b15263",
    "dpmpp_3m_exact": "54586336db3390b0",
    "unipc": "4064fb9ff380f471",
    "unipc_bh1_2": "f0bd80731823d7b7",
    "unipc_bh1_3": "21392444541ae1be",
    "unipc_bh2_2": "4c4374fd094aa9c4",
    "unipc_bh2_3": "4064fb9ff380f471",
    "ipndm": "698a3d6aa9afc746",
    "ipndm_2": "1475f318a33ada9b",
    "ipndm_3": "fb97cbfc7aa87392",
}


def _cases():
    """Every schedule, N = 2, 5, 16, float64 and float32: (denoiser, logSNR steps, per-sample
    heuristic grids, x) in a fixed order."""
    for make in SCHEDULES.values():
        sch = make()
        den = AnalyticDenoiser(BUILTIN_MIXTURES["gmm2d"](), sch)
        for n in (2, 5, 16):
            t = HEURISTICS["logsnr"](sch, n)
            grid = torch.stack([HEURISTICS[h](sch, n) for h in ("edm", "time_quadratic", "time_uniform")], 1)
            for dtype in (torch.float64, torch.float32):
                yield den, t, grid, (torch.randn(3, 2, generator=torch.Generator().manual_seed(n), dtype=DTYPE) * sch.sigma_T).to(dtype)


def _decoupled(times: torch.Tensor) -> torch.Tensor:
    tm = times.clone()
    tm[1:-1] -= 0.1 * (times[1:-1] - times[2:])
    return tm


def _pinned_outputs(name: str) -> list[torch.Tensor]:
    """logSNR steps plain and decoupled, and per-sample heuristic grids, over ``_cases``."""
    fn, outs = SOLVERS[name].fn, []
    for den, t, grid, x in _cases():
        outs += [fn(den, x, t), fn(den, x, t, _decoupled(t)), fn(den, x, grid)]
    return outs


# The same for the gradients of a fixed read-out with respect to x, t_steps and t_model (what LD3 trains with).
PINNED_GRADIENTS = {
    "euler": "3937f9b1388d85ca",
    "heun": "8193d81d3998c0b6",
    "dpmpp_2m": "0f0f833d9c5f85aa",
    "dpmpp_3m": "4cd308c088e35ec9",
    "dpmpp_3m_exact": "abc26a8e0fd8d052",
    "unipc": "6216a3f8c6c79bc6",
    "unipc_bh1_2": "d3238ded62872a2a",
    "unipc_bh1_3": "8cea01bc2bacf718",
    "unipc_bh2_2": "fcde88a0ca5225d2",
    "unipc_bh2_3": "6216a3f8c6c79bc6",
    "ipndm": "267f487964990ee3",
    "ipndm_2": "9e81f63c0be8bc9a",
    "ipndm_3": "9313f2f8468539e2",
}


def _pinned_gradients(name: str) -> list[torch.Tensor]:
    fn, outs = SOLVERS[name].fn, []
    for den, t, grid, x in _cases():
        x = x.requires_grad_(True)
        for times in (t, grid):
            ts, tm = times.clone().requires_grad_(True), _decoupled(times).requires_grad_(True)
            out = fn(den, x, ts, tm)
            outs += list(torch.autograd.grad((out * out).sum(), (x, ts, tm)))
    return outs


def _digest(tensors: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("name", SOLVERS)
def test_outputs_and_gradients_on_grids_ending_at_t_min_are_unchanged(name):
    assert _digest(_pinned_outputs(name)) == PINNED[name]
    assert _digest(_pinned_gradients(name)) == PINNED_GRADIENTS[name]


def test_final_grid():
    t = edm(EDM(), 4)
    assert final_grid(t, "sigma_min") is t
    zero = final_grid(t, "zero")
    assert torch.equal(zero[:-1], t[:-1]) and float(zero[-1]) == 0.0 and float(t[-1]) == EDM().t_min
    per_sample = torch.stack([t, t], 1)
    assert torch.equal(final_grid(per_sample, "zero")[-1], torch.zeros(2, dtype=DTYPE))
    ti = t.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(final_grid(ti, "zero").sum(), ti)
    assert g.tolist() == [1.0] * 4 + [0.0]  # differentiable in the times it keeps
    with pytest.raises(ValueError, match=r"final: unknown final step 'last'; known: \['sigma_min', 'zero'\]"):
        final_grid(t, "last")


def test_ending_picks_the_solver_of_a_final_rule():
    sch = EDM()
    den = AnalyticDenoiser(BUILTIN_MIXTURES["gmm2d"](), sch)
    x = torch.randn(2, 2, generator=torch.Generator().manual_seed(0), dtype=DTYPE) * sch.sigma_T
    t = edm(sch, 5)
    assert FINALS == ("sigma_min", "zero") and check_final("zero") == "zero"
    for name, spec in SOLVERS.items():
        assert spec.ending() is spec.fn and spec.ending("sigma_min") is spec.fn  # the default: today's solver itself
        assert torch.equal(spec.ending("zero")(den, x, t), spec.fn(den, x, final_grid(t, "zero"))), name
    assert torch.equal(SOLVERS["unipc"].ending("zero")(den, x, t, lower_order_final=False),
                       SOLVERS["unipc"].fn(den, x, final_grid(t, "zero"), lower_order_final=False))
    with pytest.raises(ValueError, match="final: unknown final step"):
        SOLVERS["euler"].ending("t_min")
