"""What every solver shares: argument checks and the per-step schedule quantities."""

from __future__ import annotations

import math

import torch
from torch import Tensor

from ..denoisers import bcast  # noqa: F401  (re-exported for the solver modules)


def check_times(x: Tensor, t_steps: Tensor, t_model: Tensor | None) -> Tensor:
    """Validate ``t_steps`` ((N+1,) or (N+1, B)) and return ``t_model`` (defaults to ``t_steps``)."""
    if t_steps.ndim not in (1, 2) or t_steps.shape[0] < 2:
        raise ValueError(f"t_steps must have shape (N+1,) or (N+1, B) with N >= 1, got {tuple(t_steps.shape)}")
    if t_steps.ndim == 2 and t_steps.shape[1] != x.shape[0]:
        raise ValueError(f"per-sample t_steps has {t_steps.shape[1]} columns for a batch of {x.shape[0]}")
    if t_model is None:
        return t_steps
    if t_model.shape != t_steps.shape:
        raise ValueError(f"t_model shape {tuple(t_model.shape)} differs from t_steps {tuple(t_steps.shape)}")
    return t_model


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
