"""A job's training state as checkpoint bytes, and back.

The state is what ``ld3core.train`` hands to ``on_checkpoint``: tensors and plain values only,
so that loading it runs no code (``weights_only``).
"""

from __future__ import annotations

import io
from typing import Any

import torch


def state_to_bytes(state: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()


def state_from_bytes(data: bytes) -> dict[str, Any]:
    """A checkpoint back; ``weights_only`` refuses anything but tensors and plain values."""
    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
