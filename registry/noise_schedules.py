"""What the API checks about a catalog model's noise-schedule config, without importing torch.

Mirrors ``ld3core.schedules`` (``schedule_from_config`` and each schedule's fields);
``tests/registry/test_noise_schedules.py`` fails if the two drift apart. A config that passes
here is one the worker rebuilds, with finite log-SNRs over [t_min, T].
"""

from __future__ import annotations

import math
from typing import Any

# Each schedule's parameters (all optional but vp_discrete's; ld3core's defaults apply).
PARAMETERS: dict[str, tuple[str, ...]] = {
    "vp_discrete": ("alphas_cumprod",),
    "vp_linear": ("beta_min", "beta_max", "T", "t_min"),
    "vp_cosine": ("s", "T", "t_min"),
    "edm": ("T", "t_min"),
    "flow": ("T", "t_min"),
}
NAMES: tuple[str, ...] = tuple(PARAMETERS)
DEFAULTS: dict[str, dict[str, float]] = {  # ld3core's field defaults, for the range checks
    "vp_linear": {"beta_min": 0.1, "beta_max": 20.0, "T": 1.0, "t_min": 1e-3},
    "vp_cosine": {"s": 0.008, "T": 0.9946, "t_min": 1e-3},
    "edm": {"T": 80.0, "t_min": 0.002},
    "flow": {"T": 0.999, "t_min": 1e-3},
}
MAX_TRAIN_STEPS = 100_000  # vp_discrete: the longest alphas_cumprod (DDPM and Stable Diffusion: 1000)
MAX_EDM_T = 1e5  # edm: the largest sigma at T (EDM: 80; VE models: a few hundred)


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def check_schedule_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """``cfg`` if ``ld3core.schedules.schedule_from_config`` takes it and its times stay in range, else ValueError."""
    name = cfg.get("name")
    if name not in PARAMETERS:
        raise ValueError(f"unknown noise schedule {name!r}; known: {NAMES}")
    unknown = sorted(set(cfg) - {"name", *PARAMETERS[name]})
    if unknown:
        raise ValueError(f"{name} takes {list(PARAMETERS[name])}, not {unknown}")
    if name == "vp_discrete":
        _check_alphas_cumprod(cfg.get("alphas_cumprod"))
        return cfg
    p = {**DEFAULTS[name], **{k: _number(k, v) for k, v in cfg.items() if k != "name"}}
    if not 0 < p["t_min"] < p["T"]:
        raise ValueError(f"{name} needs 0 < t_min < T, got t_min={p['t_min']}, T={p['T']}")
    if name in ("vp_cosine", "flow") and not p["T"] < 1:
        raise ValueError(f"{name} needs T < 1 (its log-SNR is -inf at 1), got {p['T']}")
    if name == "edm" and not p["T"] <= MAX_EDM_T:
        raise ValueError(f"edm needs T <= {MAX_EDM_T:g} (sigma at T: the prior noise's scale), got {p['T']}")
    if name == "vp_linear" and not 0 <= p["beta_min"] < p["beta_max"]:
        raise ValueError(f"vp_linear needs 0 <= beta_min < beta_max, got {p['beta_min']}, {p['beta_max']}")
    if name == "vp_cosine" and not p["s"] >= 0:
        raise ValueError(f"vp_cosine needs s >= 0, got {p['s']}")
    at_t_min, at_T = log_snr(name, p, p["t_min"]), log_snr(name, p, p["T"])
    if not math.isfinite(at_t_min) or not math.isfinite(at_T) or not at_t_min > at_T:
        raise ValueError(f"{name} {p}: the log-SNR must be finite and fall from t_min to T, got {at_t_min} at t_min, "
                         f"{at_T} at T")
    return cfg


def log_snr(name: str, p: dict[str, float], t: float) -> float:
    """lambda_t = log(alpha_t / sigma_t) of a continuous schedule, as ld3core.schedules computes it; nan off its domain."""
    try:
        if name == "edm":
            return -math.log(t)
        if name == "flow":
            return math.log1p(-t) - math.log(t)
        if name == "vp_linear":
            log_alpha = -0.25 * t**2 * (p["beta_max"] - p["beta_min"]) - 0.5 * t * p["beta_min"]
        else:  # vp_cosine
            s = p["s"]
            log_alpha = math.log(math.cos((t + s) / (1.0 + s) * math.pi / 2.0)) - math.log(math.cos(s / (1.0 + s) * math.pi / 2.0))
        return log_alpha - 0.5 * math.log(-math.expm1(2.0 * log_alpha))
    except (ValueError, OverflowError):  # log of a non-positive number, an exp too large
        return math.nan


def _check_alphas_cumprod(ac: Any) -> None:
    if not isinstance(ac, (list, tuple)) or not 2 <= len(ac) <= MAX_TRAIN_STEPS:
        raise ValueError(f"vp_discrete needs an 'alphas_cumprod' list of 2 to {MAX_TRAIN_STEPS} numbers")
    values = [_number("alphas_cumprod", a) for a in ac]
    if not all(0 < a < 1 for a in values) or not all(a > b for a, b in zip(values, values[1:])):
        raise ValueError("alphas_cumprod must be strictly decreasing values in (0, 1)")


__all__ = ["PARAMETERS", "NAMES", "DEFAULTS", "MAX_TRAIN_STEPS", "MAX_EDM_T", "check_schedule_config", "log_snr"]
