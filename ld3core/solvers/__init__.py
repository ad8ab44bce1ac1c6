"""Diffusion ODE solvers as pure functions ``(denoiser, x, t_steps, t_model=None) -> x``.

Every solver: differentiable in x, ``t_steps`` and ``t_model``; no hidden state; no
``no_grad`` inside (the caller decides). ``t_steps`` is (N+1,) shared by the batch or
(N+1, B), one discretization per sample (several schedules trained side by side in one
network call). ``t_model`` (same shape) holds the times the network is evaluated at
(LD3's decoupled times); the step sizes always use ``t_steps``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable

from torch import Tensor

from .dpmpp import dpmpp_2m, dpmpp_3m
from .euler import euler
from .heun import heun
from .ipndm import ipndm
from .unipc import unipc

Solver = Callable[..., Tensor]


@dataclass(frozen=True)
class SolverSpec:
    """A named solver and how its step count relates to its NFE."""

    name: str
    fn: Solver
    evals_per_step: int = 1  # Heun: 2 per step, the last step is Euler (EDM's convention)

    def nfe(self, n_steps: int) -> int:
        return n_steps if self.evals_per_step == 1 else 2 * n_steps - 1

    def steps_for_nfe(self, nfe: int) -> int:
        """Steps N such that nfe(N) <= nfe, as many as fit."""
        if nfe < 1:
            raise ValueError(f"nfe must be >= 1, got {nfe}")
        return nfe if self.evals_per_step == 1 else (nfe + 1) // 2


SOLVERS: dict[str, SolverSpec] = {
    "euler": SolverSpec("euler", euler),
    "heun": SolverSpec("heun", heun, evals_per_step=2),
    "dpmpp_2m": SolverSpec("dpmpp_2m", dpmpp_2m),
    "dpmpp_3m": SolverSpec("dpmpp_3m", dpmpp_3m),  # the ecosystem's formula: order 2 (see dpmpp.py)
    "dpmpp_3m_exact": SolverSpec("dpmpp_3m_exact", partial(dpmpp_3m, exact_d2=True)),  # order 3
    "unipc": SolverSpec("unipc", partial(unipc, order=3, variant="bh2")),
    "unipc_bh1_2": SolverSpec("unipc_bh1_2", partial(unipc, order=2, variant="bh1")),
    "unipc_bh1_3": SolverSpec("unipc_bh1_3", partial(unipc, order=3, variant="bh1")),
    "unipc_bh2_2": SolverSpec("unipc_bh2_2", partial(unipc, order=2, variant="bh2")),
    "unipc_bh2_3": SolverSpec("unipc_bh2_3", partial(unipc, order=3, variant="bh2")),
    "ipndm": SolverSpec("ipndm", partial(ipndm, order=4)),
    "ipndm_2": SolverSpec("ipndm_2", partial(ipndm, order=2)),
    "ipndm_3": SolverSpec("ipndm_3", partial(ipndm, order=3)),
}


def get_solver(name: str) -> SolverSpec:
    if name not in SOLVERS:
        raise ValueError(f"unknown solver {name!r}; known: {sorted(SOLVERS)}")
    return SOLVERS[name]


__all__ = ["SOLVERS", "SolverSpec", "get_solver", "euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm"]
