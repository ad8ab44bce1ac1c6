"""Prior noise and teacher pairs (x_T, Psi_*(x_T)).

One generator per sample seed: sample i's noise depends only on its seed, never on the
batch size or the device (EDM's generate.py does the same). Teacher runs are batched and
run without autograd. Conditional models take one condition per sample (``cond``, aligned
with the seeds), which the pairs carry on to training and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import Tensor

from .config import TeacherSpec
from .denoisers import ConditionalDenoiser, Denoiser, conditioned
from .heuristics import heuristic
from .solvers import get_solver


def prior_noise(
    seeds: Sequence[int], shape: Sequence[int], sigma_T: float, *,
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
) -> Tensor:
    """x_T ~ N(0, sigma_T^2 I), one CPU generator per seed, then moved to ``device``."""
    xs = [torch.randn(tuple(shape), generator=torch.Generator().manual_seed(int(s)), dtype=torch.float64) for s in seeds]
    return (torch.stack(xs) * sigma_T).to(dtype=dtype, device=device)


@dataclass
class Pairs:
    """Noise ``x_T`` (n, *shape) and the teacher's outputs ``x_0`` (n, *shape); for conditional
    models ``cond`` (n, ...) holds each sample's condition (class labels (n,), embeddings (n, L, D))."""

    x_T: Tensor
    x_0: Tensor
    cond: Tensor | None = None

    def __post_init__(self) -> None:
        if self.cond is not None and self.cond.shape[0] != self.x_T.shape[0]:
            raise ValueError(f"cond holds {self.cond.shape[0]} conditions for {self.x_T.shape[0]} samples")

    def __len__(self) -> int:
        return self.x_T.shape[0]


@torch.no_grad()
def solve_batched(
    denoiser: Denoiser | ConditionalDenoiser, solver: str, t_steps: Tensor, x_T: Tensor, batch_size: int,
    on_batch: Callable[[int, int], None] | None = None, cond: Tensor | None = None,
) -> Tensor:
    """Run ``solver`` over ``x_T`` (with per-sample conditions ``cond``) in chunks of ``batch_size`` without autograd."""
    fn = get_solver(solver).fn
    out = []
    for i in range(0, x_T.shape[0], batch_size):
        den = conditioned(denoiser, None if cond is None else cond[i : i + batch_size])
        out.append(fn(den, x_T[i : i + batch_size], t_steps))
        if on_batch:
            on_batch(min(i + batch_size, x_T.shape[0]), x_T.shape[0])
    return torch.cat(out)


def teacher_pairs(
    denoiser: Denoiser | ConditionalDenoiser, spec: TeacherSpec, seeds: Sequence[int], shape: Sequence[int], *,
    batch_size: int = 64, dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
    on_batch: Callable[[int, int], None] | None = None, cond: Tensor | None = None,
) -> Pairs:
    """Noise from ``seeds`` and the teacher solver's outputs for it; ``cond`` (one per seed)
    conditions a conditional denoiser and is kept in the pairs."""
    sch = denoiser.schedule
    x_T = prior_noise(seeds, shape, sch.sigma_T, dtype=dtype, device=device)
    if cond is not None:
        if cond.shape[0] != len(seeds):
            raise ValueError(f"cond holds {cond.shape[0]} conditions for {len(seeds)} seeds")
        cond = cond.to(device)
    solver = get_solver(spec.solver)
    t_steps = heuristic(spec.heuristic, sch, solver.steps_for_nfe(spec.nfe)).to(device)
    return Pairs(x_T, solve_batched(denoiser, spec.solver, t_steps, x_T, batch_size, on_batch, cond), cond)
