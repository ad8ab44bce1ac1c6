"""ld3core.solvers itself: the final-step rule of a stored schedule (``final_grid``,
``SolverSpec.ending``) and the pin of every solver's output on grids that do not end at 0."""

from __future__ import annotations

import pytest
import torch

from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser
from ld3core.heuristics import HEURISTICS, edm
from ld3core.schedules import DTYPE, EDM, RectifiedFlow, VPCosine, VPDiscrete, VPLinear
from ld3core.solvers import FINALS, SOLVERS, check_final, final_grid

SCHEDULES = {"vp_discrete": VPDiscrete.linear, "vp_linear": VPLinear, "vp_cosine": VPCosine, "edm": EDM,
             "flow": RectifiedFlow}

# Fingerprints (``_fingerprint``) of every output of ``_pinned_outputs`` and every gradient of
# ``_pinned_gradients``, computed with the solvers as they were before grids could end at 0
# (commit 64d7706; the bits were the same at 710318a, before the solvers became generators of
# their network evaluations, and after). Grids that do not end at 0 must give these values: LD3
# results measured before those changes stay valid. They are sums, not bits (a sha256 of the
# bits differed between two CPUs running the same torch build), compared at a tolerance far
# below any change of formula and above float rounding: 1e-9 (float64) and 1e-4 (float32) of
# the values' L1 norm.
FINGERPRINTS = {
    "euler": ((0.0447559192577653, -2.42452635845508, 101.191866234996, 0.0447595687583089, -2.42452276070027, 101.191871791147),
             (156.759024199058, -34.2656184538948, 2357.32068406273, 56.8701268608047, -8.17354990836258, 99.4647941980629)),
    "heun": ((-47.4274965016811, -5.46196917405688, 252.290050074107, -47.4307265612297, -5.4615056468246, 252.293296079617),
            (791836.493955876, 1268001.63207703, 808186.030208321, -680.882830774786, 796.494242667548, 911.930520208942)),
    "dpmpp_2m": ((-0.414498315224329, -1.09576502112423, 131.172760396622, -0.414498184982222, -1.09576469903157, 131.172758085595),
                (-2488.37875656834, 1103.29029671247, 5077.31253757609, -37.9081981161431, -24.3802544059789, 82.7335022657822)),
    "dpmpp_3m": ((-12.2683049345787, 6.3295206679832, 152.154922362308, -12.2683054452064, 6.329522197825, 152.154924284783),
                (-32049.8034815848, 10134.6507528633, 43022.9606414136, 103.231035705295, -139.849253788844, 260.617485531694)),
    "dpmpp_3m_exact": ((-15.6355266958004, 11.3625574307704, 160.238077983705, -15.6355188938323, 11.3625502476905, 160.23807408358),
                      (-72596.719643628, 19031.1229545673, 97201.2145404102, -255.688244446513, -148.68185908864, 947.49861175798)),
    "unipc": ((-8.52571688932687, -0.97811621217998, 142.13273886119, -8.52571057181922, -0.97811616178419, 142.132735820225),
             (-1481.36900960867, 413.79598036229, 4681.03174048035, -83.6641440738408, -53.9838088520362, 127.808373964479)),
    "unipc_bh1_2": ((-11.1971329872059, -1.25453902453822, 154.51505903429, -11.1971343955956, -1.25453743207241, 154.515059764963),
                   (-4563.20321649026, 988.952269731416, 10199.8496723381, -332.517778420496, 23.4714911554098, 401.714699272817)),
    "unipc_bh1_3": ((-11.4239933325893, -2.20242116196634, 153.26075651836, -11.4239914724603, -2.20242271562368, 153.260757940821),
                   (-5400.67490806501, 2045.43533163788, 9831.28429472158, -81.7991301366619, -24.389489421395, 145.270254288236)),
    "unipc_bh2_2": ((0.409882729300932, -2.63925963779564, 130.430523932499, 0.409882656298578, -2.63926279881576, 130.430525633506),
                   (-423.525128478415, 251.085342325151, 2412.69308308241, -19.2323465871061, -2.08751291944685, 51.8298946424286)),
    "unipc_bh2_3": ((-8.52571688932687, -0.97811621217998, 142.13273886119, -8.52571057181922, -0.97811616178419, 142.132735820225),
                   (-1481.36900960867, 413.79598036229, 4681.03174048035, -83.6641440738408, -53.9838088520362, 127.808373964479)),
    "ipndm": ((-13.8937912568048, -1.13469690646774, 155.706628950756, -13.8942509985063, -1.13470938583101, 155.70697220345),
             (-681.972500064466, 232.180132818001, 5120.65141759023, -28.8033646521471, -13.2047111630874, 103.963094717117)),
    "ipndm_2": ((0.696697312704563, -2.73538363374861, 136.45979581324, 0.696142076980323, -2.73532045353829, 136.460298689548),
               (-102.378441330641, 441.4036047051, 3164.12483880404, -79.2447028418883, -78.9407793771082, 123.212434958203)),
    "ipndm_3": ((-10.3483422774818, -1.93653741635831, 151.803051273399, -10.3491377187602, -1.93651324443011, 151.803645823122),
               (-436.394576896279, 970.410286326688, 4763.3909827637, -107.456184882498, 1.14133804698997, 162.101038039144)),
}
TOLERANCE = {torch.float64: 1e-9, torch.float32: 1e-4}


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
def _pinned_gradients(name: str) -> list[torch.Tensor]:
    fn, outs = SOLVERS[name].fn, []
    for den, t, grid, x in _cases():
        x = x.requires_grad_(True)
        for times in (t, grid):
            ts, tm = times.clone().requires_grad_(True), _decoupled(times).requires_grad_(True)
            out = fn(den, x, ts, tm)
            outs += list(torch.autograd.grad((out * out).sum(), (x, ts, tm)))
    return outs


def _fingerprint(tensors: list[torch.Tensor]) -> list[float]:
    """Per dtype (float64, then float32): the sum, a fixed random projection and the L1 norm of all values."""
    out = []
    for dtype in TOLERANCE:
        v = torch.cat([t.detach().reshape(-1).double() for t in tensors if t.dtype == dtype])
        w = torch.randn(v.numel(), generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        out += [float(v.sum()), float((v * w).sum()), float(v.abs().sum())]
    return out


def _assert_matches(tensors: list[torch.Tensor], pinned: tuple[float, ...]) -> None:
    got = _fingerprint(tensors)
    for k, dtype in enumerate(TOLERANCE):
        norm = pinned[3 * k + 2]
        for j in range(3):
            assert abs(got[3 * k + j] - pinned[3 * k + j]) <= TOLERANCE[dtype] * norm, (dtype, j, got, pinned)


@pytest.mark.parametrize("name", SOLVERS)
def test_outputs_and_gradients_on_grids_ending_at_t_min_are_unchanged(name):
    outputs, gradients = FINGERPRINTS[name]
    _assert_matches(_pinned_outputs(name), outputs)
    _assert_matches(_pinned_gradients(name), gradients)


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
