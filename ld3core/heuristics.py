"""Step-time heuristics: N+1 strictly decreasing times from T to t_min (float64).

Each works for every schedule in ``ld3core.schedules``:
- ``time_uniform`` / ``time_quadratic``: uniform in t, or in sqrt(t) (DPM-Solver's forms);
- ``logsnr``: uniform in lambda = log(alpha/sigma) (DPM-Solver, UniPC);
- ``edm``: uniform in (sigma/alpha)^(1/rho), rho = 7 (Karras et al. 2022, eq. 5).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

from .schedules import DTYPE, NoiseSchedule


def _pin_ends(t: Tensor, schedule: NoiseSchedule) -> Tensor:
    """Set the end points exactly (inverse maps round) and check monotonicity."""
    t = t.clone()
    t[0], t[-1] = schedule.T, schedule.t_min
    if not bool((t[1:] < t[:-1]).all()):
        raise ValueError("heuristic produced a non-decreasing step sequence")
    return t


def time_uniform(schedule: NoiseSchedule, n: int) -> Tensor:
    return _pin_ends(torch.linspace(schedule.T, schedule.t_min, n + 1, dtype=DTYPE), schedule)


def time_quadratic(schedule: NoiseSchedule, n: int) -> Tensor:
    return _pin_ends(torch.linspace(schedule.T**0.5, schedule.t_min**0.5, n + 1, dtype=DTYPE) ** 2, schedule)


def logsnr(schedule: NoiseSchedule, n: int) -> Tensor:
    lam = torch.linspace(float(schedule.lam(schedule.T)), float(schedule.lam(schedule.t_min)), n + 1, dtype=DTYPE)
    return _pin_ends(schedule.t_from_lambda(lam), schedule)


def edm(schedule: NoiseSchedule, n: int, rho: float = 7.0) -> Tensor:
    s_max, s_min = float(schedule.edm_sigma(schedule.T)), float(schedule.edm_sigma(schedule.t_min))
    ramp = torch.linspace(0.0, 1.0, n + 1, dtype=DTYPE)
    sig = (s_max ** (1 / rho) + ramp * (s_min ** (1 / rho) - s_max ** (1 / rho))) ** rho
    return _pin_ends(schedule.t_from_edm_sigma(sig), schedule)


HEURISTICS: dict[str, Callable[[NoiseSchedule, int], Tensor]] = {
    "time_uniform": time_uniform,
    "time_quadratic": time_quadratic,
    "logsnr": logsnr,
    "edm": edm,
}


def heuristic(name: str, schedule: NoiseSchedule, n: int) -> Tensor:
    if name not in HEURISTICS:
        raise ValueError(f"unknown heuristic {name!r}; known: {sorted(HEURISTICS)}")
    if n < 1:
        raise ValueError(f"a discretization needs at least one step, got n={n}")
    return HEURISTICS[name](schedule, n)
