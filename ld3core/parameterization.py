"""LD3's learnable discretization (Sec. 3.3): xi -> strictly decreasing times, and its inverse.

Time mode: t_i = t_min + (T - t_min) * (tau'_i - tau'_N) / (tau'_0 - tau'_N), where
tau'_i = sum_{n >= i} softmax(xi)_n (the paper's renormalised reversed cumulative softmax).
Step i covers the fraction softmax(xi)_i / sum_{n<N} softmax(xi)_n of [t_min, T], so in this
indexing xi_N has no effect (the renormalisation cancels it; the spec's "xi_0" is the same
entry in the authors' reversed order). Lambda mode: the same construction on
[lambda(T), lambda(t_min)], mapped back to t. Endpoints are exact by construction.

Decoupled model-input times: c_i = u_i + xi^c_i in the parameterization's space u (t in time
mode, lambda in lambda mode), |xi^c_i| bounded by just under half the smallest gap of u itself (the
authors' code measures that gap on the raw logits in lambda mode, which is wrong), with
xi^c_0 = xi^c_N = 0. A bound below half the smallest gap keeps c strictly monotone (half
itself lets two neighbours meet).

All functions take a leading batch of starts: xi is (..., N+1).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor

from .config import MODES
from .schedules import DTYPE, NoiseSchedule

Mode = Literal["time", "lambda"]
# Fraction of the smallest gap a decoupled offset may use: just under the authors' 0.5, because
# two neighbours at +/- half the smallest gap meet (t^c_i = t^c_{i+1}), which training with
# ``restore`` reached on a toy model (tests/ld3core/test_train.py, conditional cases).
XIC_BOUND = 0.49


def _interval(schedule: NoiseSchedule, mode: Mode) -> tuple[float, float]:
    if mode == "time":
        return schedule.T, schedule.t_min
    if mode == "lambda":
        return float(schedule.lam(schedule.T)), float(schedule.lam(schedule.t_min))
    raise ValueError(f"unknown parameterization mode {mode!r}; known: {MODES}")


def _to_t(u: Tensor, schedule: NoiseSchedule, mode: Mode) -> Tensor:
    if mode == "time":
        return u
    t = schedule.t_from_lambda(u)
    # Pin the end points: the inverse map rounds.
    # Filled on the device: no host-to-device copy inside an iteration (ld3core.graphs).
    first, last = torch.full_like(t[..., :1], schedule.T), torch.full_like(t[..., :1], schedule.t_min)
    return torch.cat([first, t[..., 1:-1], last], dim=-1)


def _from_t(t: Tensor, schedule: NoiseSchedule, mode: Mode) -> Tensor:
    return t if mode == "time" else schedule.lam(t)


def unit_steps(xi: Tensor) -> Tensor:
    """The cumulative fractions (1 at i = 0, 0 at i = N) of the renormalised reversed cumsum."""
    p = torch.softmax(xi.to(DTYPE), dim=-1)
    tau = p.flip(-1).cumsum(-1).flip(-1)  # tau'_i = sum_{n >= i} p_n
    return (tau - tau[..., -1:]) / (tau[..., :1] - tau[..., -1:])


def times_from_xi(xi: Tensor, schedule: NoiseSchedule, mode: Mode = "time") -> Tensor:
    """xi (..., N+1) -> step times (..., N+1), t_0 = T > ... > t_N = t_min."""
    hi, lo = _interval(schedule, mode)
    return _to_t(lo + (hi - lo) * unit_steps(xi), schedule, mode)


def xi_from_times(t: Tensor, schedule: NoiseSchedule, mode: Mode = "time") -> Tensor:
    """Inverse of ``times_from_xi``: xi_i = log of step i's fraction, xi_N = 0."""
    u = _from_t(t.to(DTYPE), schedule, mode)
    frac = (u[..., :-1] - u[..., 1:]) / (u[..., :1] - u[..., -1:])
    if not bool((frac > 0).all()):
        raise ValueError("times must be strictly decreasing to be represented")
    return torch.cat([torch.log(frac), torch.zeros_like(frac[..., :1])], dim=-1)


def xic_bound(t: Tensor, schedule: NoiseSchedule, mode: Mode = "time") -> Tensor:
    """Largest |xi^c| allowed: half the smallest gap of the times in the parameterization space."""
    u = _from_t(t.to(DTYPE), schedule, mode)
    gaps = (u[..., :-1] - u[..., 1:]).abs()
    return XIC_BOUND * gaps.min(dim=-1, keepdim=True).values.detach()


def model_times(t: Tensor, xic: Tensor, schedule: NoiseSchedule, mode: Mode = "time") -> Tensor:
    """Decoupled network-input times t^c: offsets bounded, end points fixed."""
    b = xic_bound(t, schedule, mode)
    off = torch.maximum(torch.minimum(xic.to(DTYPE), b), -b)
    off = torch.cat([torch.zeros_like(off[..., :1]), off[..., 1:-1], torch.zeros_like(off[..., :1])], dim=-1)
    return _to_t(_from_t(t, schedule, mode) + off, schedule, mode)


def project_xic(xic: Tensor, t: Tensor, schedule: NoiseSchedule, mode: Mode = "time") -> Tensor:
    """Clamp stored offsets into the current bound (projected SGD on xi^c)."""
    b = xic_bound(t, schedule, mode)
    return torch.maximum(torch.minimum(xic, b), -b)
