"""Whether a job's guidance, class labels and prompts fit its model's conditioning.

One rule set for both ends: the API refuses a job that does not fit at submit (a 422 naming
each option), and the worker checks the same before it samples (a job queued before a catalog
change, or a call from a script). Torch-free, like the rest of ``registry``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from .catalog import ModelSpec


def conditioning_errors(
    spec: ModelSpec, *, guidance: Any = None, prompts: Any = None, class_labels: Any = None
) -> list[tuple[str, str]]:
    """``(option, reason)`` for each option that does not fit ``spec``, in the order guidance,
    prompts, class_labels; empty if the job fits. Unconditional models take none of them; text
    models need prompts; class labels lie in 0..num_classes-1."""
    key, kind, errors = spec.key, spec.conditioning, []
    if guidance is not None:
        if kind == "none":
            errors.append(("guidance", f"model {key!r} is unconditional; classifier-free guidance needs a conditional model"))
        elif isinstance(guidance, bool) or not isinstance(guidance, (int, float)) or not math.isfinite(guidance) or guidance < 0:
            errors.append(("guidance", f"must be a finite number >= 0, got {guidance!r}"))
    if kind == "text":
        if isinstance(prompts, str) or not isinstance(prompts, Sequence) or not prompts or not all(isinstance(p, str) for p in prompts):
            errors.append(("prompts", f"model {key!r} is text-conditional and needs a non-empty list of prompts"))
    elif prompts is not None:
        errors.append(("prompts", f"model {key!r} takes no text prompts (conditioning {kind!r})"))
    if class_labels is not None:
        if kind != "class":
            errors.append(("class_labels", f"model {key!r} is not class-conditional (conditioning {kind!r})"))
        else:
            errors.extend(_label_errors(spec.num_classes, class_labels))
    return errors


def _label_errors(n_classes: int | None, labels: Any) -> list[tuple[str, str]]:
    """Class labels must be a non-empty list of integers in 0..n_classes-1."""
    assert n_classes is not None  # ModelSpec requires it of class-conditional models
    items = list(labels) if isinstance(labels, Sequence) and not isinstance(labels, str) else []
    integers = bool(items) and all(isinstance(c, int) and not isinstance(c, bool) for c in items)
    outside = sorted({c for c in items if not 0 <= c < n_classes}) if integers else []
    if integers and not outside:
        return []
    shown = items if isinstance(labels, Sequence) and not isinstance(labels, str) else labels
    return [("class_labels", f"need a non-empty list of labels in 0..{n_classes - 1}, got {shown!r}"
                             + (f" (outside: {outside})" if outside else ""))]


__all__ = ["conditioning_errors"]
