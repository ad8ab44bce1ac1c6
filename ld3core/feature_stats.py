"""Gaussian statistics (mean, covariance) of feature sets, and a disk cache for the real data's.

The reference statistics of a dataset are computed once per feature extractor and cached
under ``$LD3_CACHE_DIR/stats`` (default ``~/.cache/ld3/stats``) as safetensors, keyed by the
extractor's name and weights hash, the dataset and the resolution: new weights or another
resolution never reuse old figures. A missing or unreadable file is recomputed.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from .files import atomic_write
from .metrics import gaussian_frechet_distance

_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(frozen=True)
class FeatureStats:
    """Mean (D,) and unbiased covariance (D, D), float64, of ``n`` feature vectors."""

    mu: Tensor
    cov: Tensor
    n: int

    @classmethod
    def of(cls, features: Tensor) -> "FeatureStats":
        f = features.detach().double().cpu().reshape(features.shape[0], -1)
        if f.shape[0] < 2:
            raise ValueError(f"features: a covariance needs at least two rows, got {f.shape[0]}")
        fc = f - f.mean(0)
        return cls(f.mean(0), fc.T @ fc / (f.shape[0] - 1), f.shape[0])

    def frechet(self, other: "FeatureStats") -> float:
        """Squared Frechet distance between the two fitted Gaussians (FID's formula)."""
        if self.mu.shape != other.mu.shape:
            raise ValueError(f"feature dimensions differ: {self.mu.numel()} vs {other.mu.numel()}")
        return gaussian_frechet_distance(self.mu, self.cov, other.mu, other.cov)


def cache_dir() -> Path:
    """``$LD3_CACHE_DIR/stats``, default ``~/.cache/ld3/stats``."""
    return Path(os.environ.get("LD3_CACHE_DIR") or "~/.cache/ld3").expanduser() / "stats"


def stats_path(extractor: str, extractor_sha256: str, dataset: str, resolution: int, root: str | os.PathLike | None = None) -> Path:
    for name, v in (("extractor", extractor), ("dataset", dataset), ("extractor_sha256", extractor_sha256)):
        if not _NAME.match(v):
            raise ValueError(f"{name}: {v!r} must be letters, digits, '.', '_' or '-'")
    if resolution < 1:
        raise ValueError(f"resolution: must be >= 1, got {resolution}")
    base = Path(root) if root is not None else cache_dir()
    return base / f"{extractor}-{extractor_sha256[:16]}-{dataset}-{resolution}px.safetensors"


def reference_stats(
    extractor: str, extractor_sha256: str, dataset: str, resolution: int, features: Callable[[], Tensor], *,
    root: str | os.PathLike | None = None,
) -> FeatureStats:
    """Cached statistics of the real data; on a miss ``features()`` computes the (n, D)
    features, whose statistics are written atomically (concurrent workers never read half a file)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save_file

    path = stats_path(extractor, extractor_sha256, dataset, resolution, root)
    meta = {"extractor": extractor, "extractor_sha256": extractor_sha256, "dataset": dataset, "resolution": str(resolution)}
    if path.is_file():
        try:
            t = load_file(str(path))
            return FeatureStats(t["mu"], t["cov"], int(t["n"]))
        except (SafetensorError, OSError, KeyError):
            pass  # unreadable: recompute and overwrite
    stats = FeatureStats.of(features())
    tensors = {"mu": stats.mu.contiguous(), "cov": stats.cov.contiguous(), "n": torch.tensor(stats.n)}
    atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))
    return stats
