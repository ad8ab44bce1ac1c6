"""Per-sample distances d(pred, target) -> (B,) for the LD3 objective (Sec. 3.2, eq. 4-5)."""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

Loss = Callable[[Tensor, Tensor], Tensor]
LOSS_NAMES = ("lpips", "lpips_alex", "l2", "l1")


def l2(pred: Tensor, target: Tensor) -> Tensor:
    """Squared L2 distance per sample, averaged over elements (a mean, so the scale is
    independent of resolution): mean_j (pred_j - target_j)^2."""
    _same_shape(pred, target)
    return (pred - target).square().flatten(1).mean(1)


def l1(pred: Tensor, target: Tensor) -> Tensor:
    """L1 distance per sample, averaged over elements: mean_j |pred_j - target_j|."""
    _same_shape(pred, target)
    return (pred - target).abs().flatten(1).mean(1)


def make_loss(
    name: str, *, device: torch.device | str | None = None, decode: Callable[[Tensor], Tensor] | None = None
) -> Loss:
    """The per-sample loss ``name`` in LOSS_NAMES: a callable (pred, target) -> (B,).

    "lpips" is LPIPS-VGG (the LD3 authors' choice; inputs in [-1, 1], images below 32 px are
    upsampled), "lpips_alex" LPIPS-AlexNet, "l2" the mean squared error per sample, "l1" the mean
    absolute error per sample. ``device`` places the LPIPS network. ``decode`` (e.g. a latent
    model's VAE decoder) is applied to both arguments before the distance, on every call.
    """
    if name not in LOSS_NAMES:
        raise ValueError(f"unknown loss {name!r}; choose one of {LOSS_NAMES}")
    fn: Loss
    if name in ("lpips", "lpips_alex"):
        from .lpips import LPIPS  # imported here: pixel losses need no weights

        fn = LPIPS("vgg" if name == "lpips" else "alex").to(device)
    else:
        fn = l2 if name == "l2" else l1
    if decode is None:
        return fn
    return lambda pred, target: fn(decode(pred), decode(target))


def _same_shape(pred: Tensor, target: Tensor) -> None:
    # Broadcasting (B, ...) against (1, ...) would silently average the wrong pairs.
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
