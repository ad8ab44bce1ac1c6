"""What every solver shares: its form as a generator of network evaluations, argument checks
and the per-step schedule quantities."""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from ..denoisers import Denoiser, bcast  # noqa: F401  (bcast: re-exported for the solver modules)
from ..schedules import NoiseSchedule

Evaluations = Generator[tuple[Tensor, Tensor], Tensor, Tensor]
"""A solver's run, written once: it yields ``(x, t)`` where the network is to be evaluated next,
is sent the data prediction D(x, t) back, and returns the final x. ``run`` drives it with a
denoiser (the solver functions); a stepwise sampler (a diffusers scheduler, a k-diffusion
sampler loop) drives the same generator one network call at a time, so it computes what the
solver computes, operation for operation."""

Steps = Callable[..., Evaluations]  # (schedule, x, t_steps, t_model=None, **options) -> Evaluations


def run(evaluations: Evaluations, denoiser: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """Drive ``evaluations`` to its end, answering every request with ``denoiser``; the final x."""
    try:
        x, t = next(evaluations)
        while True:
            x, t = evaluations.send(denoiser(x, t))
    except StopIteration as done:
        return done.value


def solve(steps: Steps, denoiser: Denoiser, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None,
          **options: object) -> Tensor:
    """The solver function of ``steps``: ``(denoiser, x, t_steps, t_model) -> x``."""
    return run(steps(denoiser.schedule, x, t_steps, t_model, **options), denoiser)


@dataclass
class DeviceChecks:
    """Grid checks that stay on the device, for a caller that cannot stop to read them (a training
    iteration replayed as a CUDA graph). The solver takes as given what ``check_times`` would
    read: ``to_zero`` (the grid ends at 0) and ``zero_steps`` (it may have zero-length steps:
    the guarded multistep updates of ``defined``), and leaves in ``valid`` (``()``, or ``(B,)``
    per sample for a per-sample grid) where every rule of ``check_times`` held and the grid was
    as given. The caller reads it when it reads its losses anyway; where it is False the outputs
    mean nothing. Given what the host would have read, the solver runs exactly the operations
    of a checked run."""

    to_zero: bool
    zero_steps: bool = False
    valid: Tensor | None = None


def check_times(x: Tensor, t_steps: Tensor, t_model: Tensor | None,
                schedule: NoiseSchedule, on_device: DeviceChecks | None = None) -> tuple[Tensor, bool, bool]:
    """Validate ``t_steps`` ((N+1,) or (N+1, B)) and ``t_model`` (defaults to ``t_steps``) against
    ``schedule``; return ``(t_model, to_zero, zero_steps)``: ``to_zero`` when the grid ends at
    exactly 0, ``zero_steps`` when it has a step of zero length.

    A valid grid is finite and decreasing (a zero-length step leaves x as it is, and a
    multistep solver takes the first-order update where one is in its history: see
    ``defined``), and the schedule is finite at every time (lambda finite: alpha > 0 and
    sigma > 0) except a final 0, which means sigma = 0: the last step then lands on the data
    prediction (see the package docstring). The network times ``t_model[:-1]`` must be finite
    times of the schedule (``t_model[-1]`` is never used). Anything else raises ValueError
    naming the argument, the index and the value. With ``on_device`` nothing is read by the
    host: the value checks go to ``on_device.valid`` (``DeviceChecks``) and only the shapes raise.
    """
    if t_steps.ndim not in (1, 2) or t_steps.shape[0] < 2:
        raise ValueError(f"t_steps must have shape (N+1,) or (N+1, B) with N >= 1, got {tuple(t_steps.shape)}")
    if t_steps.ndim == 2 and t_steps.shape[1] != x.shape[0]:
        raise ValueError(f"per-sample t_steps has {t_steps.shape[1]} columns for a batch of {x.shape[0]}")
    if t_model is not None and t_model.shape != t_steps.shape:
        raise ValueError(f"t_model shape {tuple(t_model.shape)} differs from t_steps {tuple(t_steps.shape)}")
    t = t_steps.detach()
    tm = None if t_model is None else t_model.detach()[:-1]
    zero = t[-1] == 0
    last_row = torch.arange(t.shape[0], device=t.device).reshape(-1, *[1] * (t.ndim - 1)) == t.shape[0] - 1
    with torch.no_grad():
        checks = {
            "finite": torch.isfinite(t),
            "decreasing": t[1:] <= t[:-1],
            "in_schedule": torch.isfinite(schedule.lam(t)) | (last_row & zero),
            "same_end": zero == zero.flatten()[0],
        }
        if tm is not None:
            checks["model_times"] = torch.isfinite(tm) & torch.isfinite(schedule.lam(tm))
        if on_device is not None:
            checks["end"] = zero if on_device.to_zero else ~zero
            if not on_device.zero_steps:
                checks["no_zero_steps"] = t[1:] != t[:-1]
            per_sample = [c.all(0) if c.ndim == t.ndim else c for c in checks.values()]  # over the time axis
            valid = torch.stack(torch.broadcast_tensors(*per_sample)).all(0)
            on_device.valid = valid if on_device.valid is None else on_device.valid & valid
            return (t_steps if t_model is None else t_model), on_device.to_zero, on_device.zero_steps
        flags = [c.all() for c in checks.values()] + [zero.all(), (t[1:] == t[:-1]).any()]
        *ok, to_zero, zero_steps = torch.stack(flags).tolist()  # one device sync
    if not all(ok):
        _refuse(next(name for name, good in zip(checks, ok) if not good), checks, t, tm, schedule)
    return (t_steps if t_model is None else t_model), to_zero, zero_steps


def _refuse(rule: str, checks: dict[str, Tensor], t: Tensor, tm: Tensor | None, schedule: NoiseSchedule) -> None:
    """Raise the ValueError of ``check_times`` for the first place where ``rule`` fails."""
    i = tuple(int(k) for k in (~checks[rule]).nonzero()[0])
    where = f"the {schedule.name} schedule on [{schedule.t_min:g}, {schedule.T:g}]"
    if rule == "finite":
        raise ValueError(f"t_steps must be finite; t_steps{list(i)} = {float(t[i])}")
    if rule == "decreasing":
        nxt = (i[0] + 1, *i[1:])
        raise ValueError(f"t_steps must decrease; t_steps{list(i)} = {float(t[i])!r} is followed by "
                         f"t_steps{list(nxt)} = {float(t[nxt])!r}")
    if rule == "in_schedule":
        raise ValueError(f"t_steps{list(i)} = {float(t[i])!r} is outside {where} (alpha or sigma is 0 or undefined "
                         "there); only the last time may be 0, a final step to sigma = 0")
    if rule == "same_end":
        raise ValueError("t_steps: the last time is 0 for some samples and not for others; end every grid at 0 or none")
    assert tm is not None
    raise ValueError(f"t_model{list(i)} = {float(tm[i])!r} is not a time of {where}: the network cannot be evaluated there")


def defined(zero_steps: bool, h: Tensor, offsets: Sequence[Tensor]) -> Tensor | None:
    """Where a multistep update over the lambda step ``h`` with earlier points at lambda ``offsets``
    (from the step's start) is defined: h != 0 and all the points distinct; None (everywhere)
    on a grid without zero-length steps. A zero-length step breaks that for itself and for the
    steps whose history holds both of its ends; there the solvers keep the first-order update
    and compute the rest from stand-ins (``fill``) so that every ratio, solve and gradient
    stays finite. On other grids not one operation changes (bit-identical results and gradients)."""
    if not zero_steps:
        return None
    ok = h != 0
    for j, off in enumerate(offsets):
        ok = ok & (off != 0)
        for other in offsets[:j]:
            ok = ok & (off != other)
    return ok


def fill(ok: Tensor | None, value: Tensor, stand_in: float) -> Tensor:
    """``value`` where ``ok`` (``value`` itself when ok is None), else ``stand_in``."""
    return value if ok is None else torch.where(ok, value, stand_in)


def phi_tail(z: Tensor, n: int) -> list[Tensor]:
    """[g_1, ..., g_n] with g_k = z phi_{k+1}(z) = sum_j z^{j+1} / (j+k+1)!  (phi_1(z) = (e^z - 1)/z).

    The usual recurrence g_1 = (e^z - 1)/z - 1, g_{k+1} = g_k/z - 1/(k+1)! cancels
    catastrophically as z -> 0 (a collapsing step); small |z| takes the Taylor series instead.
    """
    small = z.abs() < 0.2
    zs = torch.where(small, torch.ones_like(z), z)  # keeps the unused branch (and its gradient) finite
    g = torch.expm1(zs) / zs - 1.0
    out = []
    for k in range(1, n + 1):
        if k > 1:
            g = g / zs - 1.0 / math.factorial(k)
        series = sum(z ** (j + 1) / math.factorial(j + k + 1) for j in range(10))
        out.append(torch.where(small, series, g))
    return out


def step_order(i: int, n: int, order: int, lower_order_final: bool, final_below: float = 15) -> int:
    """Order of step i of n: warm start min(order, i + 1); with ``lower_order_final`` and
    n < ``final_below`` at most n - i (the last step first order, the one before second)."""
    p = min(order, i + 1)
    return min(p, n - i) if lower_order_final and n < final_below else p
