"""Functional optimizer steps for several LD3 starts trained side by side.

The parameters are rows (one per start), each with its own learning rate, so an update is
a few tensor ops. Every step takes a per-row ``ok`` mask: a row whose loss or gradient was
non-finite keeps its parameters and optimizer state untouched, with no host sync.
The arithmetic equals torch.optim.RMSprop / SGD and ``clip_grad_norm_`` applied per row.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _rows(v: Tensor, like: Tensor) -> Tensor:
    """Shape a per-row vector (K,) to broadcast against ``like`` (K, ...)."""
    return v.reshape(v.shape + (1,) * (like.ndim - v.ndim))


def clip_rows(g: Tensor, max_norm: float) -> Tensor:
    """Per-row ``torch.nn.utils.clip_grad_norm_``: scale rows whose L2 norm exceeds max_norm."""
    norm = g.flatten(1).norm(dim=1)
    return g * _rows(torch.clamp(max_norm / (norm + 1e-6), max=1.0), g)


def finite_rows(*tensors: Tensor) -> Tensor:
    """(K,) bool: every value of row k of every tensor is finite."""
    ok = torch.ones(tensors[0].shape[0], dtype=torch.bool, device=tensors[0].device)
    for t in tensors:
        ok = ok & torch.isfinite(t.flatten(1)).all(dim=1)
    return ok


def rmsprop_step(
    p: Tensor, g: Tensor, state: dict[str, Tensor], lr: Tensor, ok: Tensor,
    *, alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.9,
) -> Tensor:
    """torch.optim.RMSprop (not centered) on rows; updates the tensors of ``state`` in place
    (they stay the same tensors: a captured iteration reads them), returns new p."""
    g = torch.where(_rows(ok, g), g, torch.zeros_like(g))
    sq = alpha * state["square_avg"] + (1 - alpha) * g * g
    buf = momentum * state["momentum_buffer"] + g / (sq.sqrt() + eps)
    keep = _rows(ok, p)
    state["square_avg"].copy_(torch.where(keep, sq, state["square_avg"]))
    buf = torch.where(keep, buf, state["momentum_buffer"])
    state["momentum_buffer"].copy_(buf)
    return torch.where(keep, p - _rows(lr, p) * buf, p)


def rmsprop_state(p: Tensor) -> dict[str, Tensor]:
    return {"square_avg": torch.zeros_like(p), "momentum_buffer": torch.zeros_like(p)}


def sgd_step(p: Tensor, g: Tensor, lr: Tensor, ok: Tensor) -> Tensor:
    """Plain SGD (no momentum) on rows, skipped where not ok."""
    return torch.where(_rows(ok, p), p - _rows(lr, p) * torch.nan_to_num(g), p)


def project_ball(x: Tensor, center: Tensor, radius: float, sample_ndim: int) -> Tensor:
    """Project each sample (its last ``sample_ndim`` dims) onto ||x - center||_2 <= radius."""
    d = x - center
    norm = d.flatten(d.ndim - sample_ndim).norm(dim=-1)
    scale = torch.clamp(radius / (norm + 1e-12), max=1.0)
    return center + d * scale.reshape(scale.shape + (1,) * sample_ndim)
