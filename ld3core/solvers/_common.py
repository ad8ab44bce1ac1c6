"""What every solver shares: argument checks and the per-step schedule quantities."""

from __future__ import annotations

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
