"""The real data of the shipped digit models: scikit-learn's digits (shipped inside the
package, no download), the images every digit model and the classifier were trained on and
the reference for FD-digits and FID."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor


def load_digits(size: int = 16) -> tuple[Tensor, Tensor]:
    """(images (1797, 1, size, size) float32 in [-1, 1], labels (1797,) int64) from sklearn digits.

    The 8x8 images (values 0..16) are bilinearly upsampled; no flips (digits are not mirror-symmetric).
    """
    if size < 1:
        raise ValueError(f"size: must be >= 1 px, got {size}")
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    x = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    return x, torch.tensor(d.target, dtype=torch.int64)


@lru_cache(maxsize=None)
def real_digits(size: int) -> Tensor:
    """The real images at ``size`` px (cached per process): what evaluation compares with."""
    return load_digits(size)[0]
