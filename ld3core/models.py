"""Built-in models: the analytic mixtures under every noise schedule, by name.

``gmm2d-edm`` is the 2-D grid mixture under the EDM schedule, ``gmm64-flow`` the 64-D
mixture under rectified flow, and so on. The service's model catalog adds real networks.
"""

from __future__ import annotations

from dataclasses import dataclass

from .analytic import BUILTIN_MIXTURES, AnalyticDenoiser
from .denoisers import Denoiser
from .schedules import EDM, RectifiedFlow, VPCosine, VPDiscrete, VPLinear

_SCHEDULES = {
    "vp": VPLinear,
    "vpdiscrete": VPDiscrete.linear,
    "cosine": VPCosine,
    "edm": EDM,
    "flow": RectifiedFlow,
}


@dataclass
class BuiltinModel:
    name: str
    denoiser: Denoiser
    sample_shape: tuple[int, ...]
    default_loss: str


def builtin_names() -> list[str]:
    return [f"{m}-{s}" for m in BUILTIN_MIXTURES for s in _SCHEDULES]


def load_builtin(name: str) -> BuiltinModel:
    mix, _, sch = name.partition("-")
    if mix not in BUILTIN_MIXTURES or sch not in _SCHEDULES:
        raise ValueError(f"unknown built-in model {name!r}; known: {builtin_names()}")
    mixture = BUILTIN_MIXTURES[mix]()
    return BuiltinModel(name, AnalyticDenoiser(mixture, _SCHEDULES[sch]()), mixture.sample_shape, "l2")
