"""Optional acceleration: ``torch.compile`` of a denoiser's network call.

Inductor fuses the network's elementwise work into fewer kernels, which is what an LD3
iteration at batch 2 needs: its cost is kernel launches, not arithmetic. CUDA graphs
(``mode="reduce-overhead"``) are not used: on an H200 (torch 2.11) the full default job failed
with "accessing tensor output of CUDAGraphs that has been overwritten by a subsequent run",
because a solver keeps earlier network outputs alive (multistep history, tensors saved for the
backward) while the same graph is replayed (benchmarks/results/train_cost_cuda_job_compiled.md);
``ld3core.graphs`` captures a whole training iteration instead, where that cannot happen.
Shapes are static in an LD3 job (one batch size for training, one for validation), so
each compiles once. The solver and the loop stay eager and differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .denoisers import Denoiser


class CompiledDenoiser:
    """The same denoiser, its call compiled (outputs and gradients equal up to float rounding)."""

    def __init__(self, denoiser: Denoiser, mode: str | None = None) -> None:
        self.inner, self.schedule = denoiser, denoiser.schedule
        self.mode = mode
        self._fn = torch.compile(self._call, mode=mode, dynamic=False)

    def _call(self, x: Tensor, t: Tensor) -> Tensor:
        return self.inner(x, t)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        return self._fn(x, t)


def compile_denoiser(denoiser: Denoiser, device: torch.device | str = "cpu") -> CompiledDenoiser:
    """Compile with inductor's default mode on every device (no CUDA graphs: see the module doc)."""
    return CompiledDenoiser(denoiser, None)
