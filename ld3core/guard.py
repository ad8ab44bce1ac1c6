"""The publish guard: serve the learned schedule only where it beats the best heuristic on test
pairs that neither training nor selection saw.

Two one-sided checks at ``z`` standard errors, both on the job's test split:

- **closeness**: the per-pair loss difference ``LD3 - best heuristic`` has ``mean + z * sem < 0``
  (LD3 is closer to the teacher's samples, beyond noise);
- **distribution** (when the job has a feature map): the Frechet distance of LD3's samples to
  the teacher's samples of the same noises, in those features, is not worse than the best
  heuristic's beyond noise: ``d - z * sd <= 0`` for ``d = FD(LD3) - FD(heuristic)``, ``sd`` from
  a paired bootstrap over the test pairs (each resample takes the same pairs for both
  schedules and the teacher).

Closeness must be shown; the distribution must not be shown worse. A schedule that is closer
sample by sample can still bunch its samples (a smaller spread, a lost mode), which only a
distribution distance sees; the per-pair loss cannot.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .metrics import frechet_distance

N_BOOTSTRAP = 200


def mean_sem(v: Tensor) -> dict[str, float]:
    """Mean and standard error of the mean (0 for a single value), in float64."""
    v = v.double()
    sem = float(v.std(unbiased=True) / math.sqrt(v.numel())) if v.numel() > 1 else 0.0
    return {"mean": float(v.mean()), "sem": sem}


def fd_difference(f_a: Tensor, f_b: Tensor, f_ref: Tensor, *, n_boot: int = N_BOOTSTRAP, seed: int = 0) -> dict[str, float]:
    """``FD(a, ref) - FD(b, ref)`` on all rows (``mean``) and its paired-bootstrap standard
    deviation (``sd``): row i of the three sets belongs to one test pair and is resampled as one."""
    n = f_ref.shape[0]
    if not (f_a.shape[0] == f_b.shape[0] == n) or n < 3:
        raise ValueError(f"features: need the same number (>= 3) of rows per set, got {f_a.shape[0]}, {f_b.shape[0]}, {n}")
    f_a, f_b, f_ref = f_a.double().cpu(), f_b.double().cpu(), f_ref.double().cpu()
    fd_a, fd_b = frechet_distance(f_a, f_ref), frechet_distance(f_b, f_ref)
    gen = torch.Generator().manual_seed(seed)
    boot = []
    for _ in range(n_boot):
        i = torch.randint(0, n, (n,), generator=gen)
        boot.append(frechet_distance(f_a[i], f_ref[i]) - frechet_distance(f_b[i], f_ref[i]))
    return {"mean": fd_a - fd_b, "sd": float(torch.tensor(boot).std(unbiased=True)), "fd_a": fd_a, "fd_b": fd_b}


@dataclass(frozen=True)
class Verdict:
    serve_ld3: bool
    loss: dict[str, float]  # paired per-pair loss difference LD3 - best heuristic: mean, sem
    fd: dict[str, float] | None  # FD(LD3) - FD(best heuristic) to the teacher: mean, sd, fd_a (LD3), fd_b; None: no features
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"serve_ld3": self.serve_ld3, "loss": self.loss, "fd": self.fd, "reason": self.reason}


def verdict(loss_ld3: Tensor, loss_best: Tensor, z: float, *, features: tuple[Tensor, Tensor, Tensor] | None = None,
            seed: int = 0) -> Verdict:
    """The guard's decision from the per-pair test losses of LD3 and the best heuristic and, if
    given, the features of (LD3's samples, the heuristic's, the teacher's) on the same pairs."""
    loss = mean_sem(loss_ld3 - loss_best)
    n = loss_ld3.numel()
    closer = loss["mean"] + z * loss["sem"] < 0
    text = f"paired loss difference {loss['mean']:.3g} ± {loss['sem']:.2g} on {n} test pairs"
    fd = None
    if features is not None:
        fd = fd_difference(*features, seed=seed)
        text += f"; FD to the teacher {fd['fd_a']:.4g} vs {fd['fd_b']:.4g} (difference {fd['mean']:.3g} ± {fd['sd']:.2g})"
    if not closer:
        return Verdict(False, loss, fd, f"not closer to the teacher beyond noise ({text})")
    if fd is not None and fd["mean"] - z * fd["sd"] > 0:
        return Verdict(False, loss, fd, f"closer sample by sample but its distribution is further from the teacher's ({text})")
    return Verdict(True, loss, fd, text + ("" if fd is not None else "; no distribution check (no feature map)"))
