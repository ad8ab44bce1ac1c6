"""Networks that safetensors (or, when enabled, pickled) state dicts are loaded into, by name.

A constructor takes the catalog's sample shape and returns ``net(x, model_time) -> prediction``
as an ``nn.Module``. Only code registered here can be instantiated: weights files carry
tensors, never code.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


class TinyConvNet(nn.Module):
    """Two 3x3 convolutions with a learned per-channel time shift; for tests and smoke runs."""

    def __init__(self, channels: int, hidden: int = 8) -> None:
        super().__init__()
        self.inp = nn.Conv2d(channels, hidden, 3, padding=1)
        self.time = nn.Linear(1, hidden)
        self.out = nn.Conv2d(hidden, channels, 3, padding=1)

    def forward(self, x: Tensor, t: Tensor) -> Tensor:
        h = self.inp(x) + self.time(t.reshape(-1, 1).to(x.dtype))[:, :, None, None]
        return self.out(torch.nn.functional.silu(h))


ARCHITECTURES: dict[str, Callable[[tuple[int, ...]], nn.Module]] = {
    "tiny_conv": lambda shape: TinyConvNet(shape[0]),
}
