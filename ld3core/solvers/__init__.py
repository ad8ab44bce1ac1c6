"""Diffusion ODE solvers as pure functions ``(denoiser, x, t_steps, t_model=None) -> x``.

Every solver: differentiable in x, ``t_steps`` and ``t_model``; no hidden state; no
``no_grad`` inside (the caller decides). ``t_steps`` is (N+1,) shared by the batch or
(N+1, B), one discretization per sample (several schedules trained side by side in one
network call). ``t_model`` (same shape) holds the times the network is evaluated at
(LD3's decoupled times); the step sizes always use ``t_steps``.

A grid ends either at a positive time (t_min: diffusers' ``final_sigmas_type="sigma_min"``)
or at exactly 0, sigma = 0 (VP t = 0, EDM sigma 0, flow t = 0: diffusers'
``final_sigmas_type="zero"``, every k-diffusion and ComfyUI sampler, EDM's t_N = 0). There the
last step is first order for every solver: the DDIM step x_t = (sigma_t/sigma_s) x_s +
alpha_t (1 - e^{-h}) D with sigma_t = 0, alpha_t = 1, h = inf is D itself, so the solver
returns the data prediction of its last evaluation (Heun's last step is Euler anyway; a
multistep method drops its history there, as diffusers and k-diffusion do). Any grid must be
finite, decreasing and inside the schedule (``_common.check_times``), else ValueError; a
zero-length step leaves x as it is (multistep methods take first order where it enters their
ratios), so that no valid grid gives a non-finite value.

A stored schedule keeps N+1 times ending at t_min and names its ``final`` rule ("sigma_min"
or "zero", ``FINALS``); ``final_grid`` turns it into the grid a solver runs and
``SolverSpec.ending(final)`` gives the solver that runs it.

Each solver is written once, as the generator of its network evaluations (``*_steps``,
``_common.Evaluations``): the solver function drives it with a denoiser, and a stepwise sampler
(``client.diffusers_scheduler``, ``client.k_diffusion``) drives ``SolverSpec.evaluations`` one
network call at a time, so what a pipeline runs is this code, not a second copy of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property, partial
from typing import Callable

import torch
from torch import Tensor

from ..config import FINALS
from ..schedules import NoiseSchedule
from ._common import DeviceChecks, Evaluations, Steps, run, solve
from .dpmpp import dpmpp_2m, dpmpp_3m, dpmpp_steps
from .euler import euler, euler_steps
from .heun import heun, heun_steps
from .ipndm import ipndm, ipndm_steps
from .unipc import unipc, unipc_steps

Solver = Callable[..., Tensor]


def check_final(final: str) -> str:
    """``final`` if it is a known final-step rule, else ValueError naming the known ones."""
    if final not in FINALS:
        raise ValueError(f"final: unknown final step {final!r}; known: {list(FINALS)}")
    return final


def final_grid(t_steps: Tensor, final: str) -> Tensor:
    """The grid a solver runs for stored step times (N+1, ending at t_min) under the ``final`` rule:
    "sigma_min" ends at t_steps[-1] (``t_steps`` itself), "zero" replaces it by 0. Differentiable."""
    if check_final(final) == "sigma_min":
        return t_steps
    return torch.cat([t_steps[:-1], torch.zeros_like(t_steps[-1:])])


def _ending_at_zero(fn: Solver, denoiser: Callable[..., Tensor], x: Tensor, t_steps: Tensor,
                    t_model: Tensor | None = None, **kwargs: object) -> Tensor:
    return fn(denoiser, x, final_grid(t_steps, "zero"), t_model, **kwargs)


@dataclass(frozen=True)
class SolverSpec:
    """A named solver: its run as network evaluations (``steps``, with fixed ``options``) and how
    its step count relates to its NFE."""

    name: str
    steps: Steps
    evals_per_step: int = 1  # Heun: 2 per step, the last step is Euler (EDM's convention)
    options: tuple[tuple[str, object], ...] = ()

    @cached_property
    def fn(self) -> Solver:
        """The solver function ``(denoiser, x, t_steps, t_model=None) -> x``."""
        return partial(solve, self.steps, **dict(self.options))

    def evaluations(self, schedule: NoiseSchedule, x: Tensor, t_steps: Tensor, t_model: Tensor | None = None,
                    final: str = "sigma_min") -> Evaluations:
        """This solver's run from ``x`` over stored step times under the ``final`` rule, as the
        generator of its network evaluations (``_common.Evaluations``): what a stepwise sampler drives."""
        return self.steps(schedule, x, final_grid(t_steps, final), t_model, **dict(self.options))

    def nfe(self, n_steps: int) -> int:
        return n_steps if self.evals_per_step == 1 else 2 * n_steps - 1

    def steps_for_nfe(self, nfe: int) -> int:
        """Steps N such that nfe(N) <= nfe, as many as fit."""
        if nfe < 1:
            raise ValueError(f"nfe must be >= 1, got {nfe}")
        return nfe if self.evals_per_step == 1 else (nfe + 1) // 2

    def ending(self, final: str = "sigma_min") -> Solver:
        """This solver for stored step times under the ``final`` rule (``final_grid``): "sigma_min"
        is ``fn`` itself, "zero" runs ``fn`` on the grid whose last time is 0."""
        return self.fn if check_final(final) == "sigma_min" else partial(_ending_at_zero, self.fn)


def _spec(name: str, steps: Steps, evals_per_step: int = 1, **options: object) -> SolverSpec:
    return SolverSpec(name, steps, evals_per_step, tuple(options.items()))


SOLVERS: dict[str, SolverSpec] = {
    "euler": _spec("euler", euler_steps),
    "heun": _spec("heun", heun_steps, evals_per_step=2),
    "dpmpp_2m": _spec("dpmpp_2m", dpmpp_steps, order=2),
    "dpmpp_3m": _spec("dpmpp_3m", dpmpp_steps, order=3),  # the ecosystem's formula: order 2 (see dpmpp.py)
    "dpmpp_3m_exact": _spec("dpmpp_3m_exact", dpmpp_steps, order=3, exact_d2=True),  # order 3
    "unipc": _spec("unipc", unipc_steps, order=3, variant="bh2"),
    "unipc_bh1_2": _spec("unipc_bh1_2", unipc_steps, order=2, variant="bh1"),
    "unipc_bh1_3": _spec("unipc_bh1_3", unipc_steps, order=3, variant="bh1"),
    "unipc_bh2_2": _spec("unipc_bh2_2", unipc_steps, order=2, variant="bh2"),
    "unipc_bh2_3": _spec("unipc_bh2_3", unipc_steps, order=3, variant="bh2"),
    "ipndm": _spec("ipndm", ipndm_steps, order=4),
    "ipndm_2": _spec("ipndm_2", ipndm_steps, order=2),
    "ipndm_3": _spec("ipndm_3", ipndm_steps, order=3),
}


def get_solver(name: str) -> SolverSpec:
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known: {sorted(SOLVERS)}")
    return SOLVERS[name]


__all__ = ["SOLVERS", "FINALS", "DeviceChecks", "Evaluations", "SolverSpec", "run", "check_final", "final_grid", "get_solver",
           "euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm"]
