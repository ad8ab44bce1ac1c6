"""Model catalog entries: what a job's model key stands for.

A job names a catalog key, never a path. ``ModelSpec`` is a small frozen record, checked on
construction and saved as JSON (``to_dict`` / ``from_dict``); the registry stores it later.
This module imports no torch: the API validates specs without loading a model; the worker's
loaders (``worker.loaders``) turn a spec into a model. What the loaders refuse without reading a
file is refused here too, so that ``POST /models`` answers it with a 422: an unknown architecture
or built-in model, a conditional network the architectures cannot take, a schedule config the
worker cannot rebuild (``registry.noise_schedules``), a location no file can have, a shape or a
class count too large to allocate.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import PurePosixPath, PureWindowsPath
from typing import Any, Literal

from . import noise_schedules

Format = Literal["diffusers", "safetensors", "analytic", "pickle"]
Conditioning = Literal["none", "class", "text"]

FORMATS: tuple[str, ...] = ("diffusers", "safetensors", "analytic", "pickle")
CONDITIONINGS: tuple[str, ...] = ("none", "class", "text")
GUARD_FEATURES: tuple[str, ...] = ("digits-classifier",)  # feature maps of the publish guard's distribution check
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v", "flow")  # ld3core.denoisers.PREDICTIONS
SCHEDULE_NAMES: tuple[str, ...] = noise_schedules.NAMES
# What the worker can instantiate (tests/registry/test_catalog.py holds these to the worker and ld3core):
ARCHITECTURES: tuple[str, ...] = ("tiny_conv",)  # worker.architectures.ARCHITECTURES: unconditional networks
BUILTIN_SHAPES: dict[str, tuple[int, ...]] = {  # ld3core.models.builtin_names() and their sample shapes
    f"{mixture}-{schedule}": shape
    for mixture, shape in (("gmm2d", (2,)), ("gmm64", (64,)))
    for schedule in ("vp", "vpdiscrete", "cosine", "edm", "flow")
}
# Bounds that keep what the worker allocates for a model finite.
MAX_SHAPE_DIMS = 8
MAX_SHAPE_SIZE = 65_536  # largest dimension (channels, height, width, ...)
MAX_SAMPLE_ELEMENTS = 2**26  # one sample's values (3 x 4096 x 4096 is 50M)
MAX_CLASSES = 1_000_000  # num_classes, and the null label at most this
FROM_SCHEDULER_CONFIG = "from_scheduler_config"  # diffusers folders: schedule/prediction from the scheduler
BUILTIN = "builtin"  # analytic models: schedule/prediction fixed by the built-in model

_KEY = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
SHA256_PATTERN = r"^[0-9a-f]{64}$"
_SHA256 = re.compile(SHA256_PATTERN)


def _fail(name: str, reason: str) -> None:
    raise ValueError(f"model spec field {name!r}: {reason}")


def _shape(name: str, value: Any) -> tuple[int, ...]:
    """A non-empty tuple of positive integers within the bounds, or a failure naming the field."""
    try:
        shape = tuple(int(d) for d in value)
    except (TypeError, ValueError, OverflowError):
        _fail(name, f"{value!r} must be a sequence of positive integers")
    if not shape or any(d <= 0 for d in shape) or any(isinstance(d, bool) for d in value):
        _fail(name, f"{value!r} must be a non-empty sequence of positive integers")
    if len(shape) > MAX_SHAPE_DIMS or max(shape) > MAX_SHAPE_SIZE or math.prod(shape) > MAX_SAMPLE_ELEMENTS:
        _fail(name, f"{list(shape)} is too large: at most {MAX_SHAPE_DIMS} dimensions of at most {MAX_SHAPE_SIZE}, "
                    f"{MAX_SAMPLE_ELEMENTS} values in all")
    return shape


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_location(location: str) -> str:
    """A relative POSIX path that stays under the model root (no absolute path, no '..')."""
    if not isinstance(location, str) or not location.strip():
        _fail("location", "must be a non-empty relative path")
    if "\x00" in location:
        _fail("location", "must not contain a NUL character (no file name holds one)")
    if "\\" in location or PureWindowsPath(location).drive:
        _fail("location", f"{location!r} must be a POSIX path relative to the model root")
    path = PurePosixPath(location)
    if path.is_absolute():
        _fail("location", f"{location!r} is absolute; give a path relative to the model root")
    if ".." in path.parts:
        _fail("location", f"{location!r} escapes the model root ('..')")
    return location


@dataclass(frozen=True)
class ModelSpec:
    """One catalog entry.

    ``location``: path under the model root (diffusers folder, weights file), or for
    ``analytic`` the built-in model's name (``ld3core.models.builtin_names()``).
    ``schedule``: a ``NoiseSchedule.config()`` dict, ``"from_scheduler_config"`` (diffusers)
    or ``"builtin"`` (analytic). ``prediction``: eps / x0 / v / flow, or the same two markers.
    ``sha256``: hex digest of the weights (``worker.loaders.weights_sha256``), required
    except for analytic models. ``architecture``: registered network for safetensors/pickle.
    ``num_classes`` / ``null_class`` (class conditioning, both required then): labels
    0..num_classes-1 are the classes, ``null_class`` the label of the unconditional prediction
    used by classifier-free guidance. ``image_shape``: a latent model's decoded image shape
    (diffusers pipeline folders with a VAE); ``sample_shape`` is then the latent shape.
    ``guard_features``: the feature map in which a job's guard compares the distribution of the
    learned schedule's samples with the best heuristic's (``ld3core.guard``): the shipped
    ``digits-classifier`` (grey or RGB images); None: that check is not made.
    """

    key: str
    format: Format
    location: str
    schedule: dict[str, Any] | str
    prediction: str
    sample_shape: tuple[int, ...]
    conditioning: Conditioning = "none"
    sha256: str | None = None
    architecture: str | None = None
    num_classes: int | None = None
    null_class: int | None = None
    image_shape: tuple[int, ...] | None = None
    guard_features: str | None = None
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.key, str) or not _KEY.match(self.key):
            _fail("key", f"{self.key!r} must be 1-128 chars of lowercase letters, digits, '.', '_', '-'")
        if self.format not in FORMATS:
            _fail("format", f"unknown format {self.format!r}; known: {FORMATS}")
        if self.format != "analytic":
            check_location(self.location)
        elif not isinstance(self.location, str) or self.location not in BUILTIN_SHAPES:
            _fail("location", f"an analytic model's location is its built-in name; known: {sorted(BUILTIN_SHAPES)}")
        self._check_schedule()
        self._check_prediction()
        object.__setattr__(self, "sample_shape", _shape("sample_shape", self.sample_shape))
        if self.format == "analytic" and self.sample_shape != BUILTIN_SHAPES[self.location]:
            _fail("sample_shape", f"{list(self.sample_shape)}: the built-in {self.location!r} samples "
                                  f"{list(BUILTIN_SHAPES[self.location])}")
        if self.image_shape is not None:
            if self.format != "diffusers":
                _fail("image_shape", f"only latent diffusers pipelines have a decoded image shape, not format {self.format!r}")
            object.__setattr__(self, "image_shape", _shape("image_shape", self.image_shape))
        if self.guard_features is not None and self.guard_features not in GUARD_FEATURES:
            _fail("guard_features", f"unknown feature map {self.guard_features!r}; known: {GUARD_FEATURES} or null")
        if self.conditioning not in CONDITIONINGS:
            _fail("conditioning", f"unknown conditioning {self.conditioning!r}; known: {CONDITIONINGS}")
        self._check_classes()
        if self.format == "analytic":
            if self.sha256 is not None and not _SHA256.match(str(self.sha256)):
                _fail("sha256", "must be 64 lowercase hex digits")
            if self.conditioning != "none":
                _fail("conditioning", "analytic models are unconditional")
        elif self.sha256 is None:
            _fail("sha256", f"required for format {self.format!r} (the weights' content hash)")
        elif not isinstance(self.sha256, str) or not _SHA256.match(self.sha256):
            _fail("sha256", f"{self.sha256!r} must be 64 lowercase hex digits")
        needs_arch = self.format in ("safetensors", "pickle")
        if needs_arch and not self.architecture:
            _fail("architecture", f"required for format {self.format!r} (a registered architecture name)")
        if needs_arch and self.architecture not in ARCHITECTURES:
            _fail("architecture", f"unknown architecture {self.architecture!r}; known: {list(ARCHITECTURES)}")
        if needs_arch and self.conditioning != "none":
            _fail("conditioning", f"the registered architectures are unconditional, not {self.conditioning!r}")
        if not needs_arch and self.architecture is not None:
            _fail("architecture", f"only safetensors and pickle weights name an architecture, not {self.format!r}")

    def _check_classes(self) -> None:
        if self.conditioning != "class":
            for name in ("num_classes", "null_class"):
                if getattr(self, name) is not None:
                    _fail(name, f"only class-conditional models have one, not conditioning {self.conditioning!r}")
            return
        if self.num_classes is None:
            _fail("num_classes", "required for class conditioning (labels are 0..num_classes-1)")
        if not _is_int(self.num_classes) or not 1 <= self.num_classes <= MAX_CLASSES:
            _fail("num_classes", f"{self.num_classes!r} must be a positive integer, at most {MAX_CLASSES}")
        if self.null_class is None:
            _fail("null_class", "required for class conditioning (the unconditional label of classifier-free guidance)")
        if not _is_int(self.null_class) or not 0 <= self.null_class <= MAX_CLASSES:
            _fail("null_class", f"{self.null_class!r} must be a non-negative integer, at most {MAX_CLASSES}")
        if self.null_class < self.num_classes:
            _fail("null_class", f"{self.null_class} is one of the classes 0..{self.num_classes - 1}; the null label must be another")

    def _check_schedule(self) -> None:
        s = self.schedule
        if isinstance(s, str):
            allowed = {"diffusers": FROM_SCHEDULER_CONFIG, "analytic": BUILTIN}.get(self.format)
            if s != allowed:
                hint = f"{allowed!r} or a schedule config dict" if allowed else "a schedule config dict"
                _fail("schedule", f"{s!r} is not valid for format {self.format!r}; give {hint}")
            return
        if not isinstance(s, dict):
            _fail("schedule", f"must be a schedule config dict, got {type(s).__name__}")
        try:
            noise_schedules.check_schedule_config(s)
        except ValueError as e:
            _fail("schedule", str(e))

    def _check_prediction(self) -> None:
        p = self.prediction
        if self.format == "analytic" and p not in ("x0", BUILTIN):
            _fail("prediction", f"analytic models predict 'x0' (or give {BUILTIN!r}), not {p!r}")
        if p in PREDICTIONS:
            if p == "flow" and isinstance(self.schedule, dict) and self.schedule.get("name") != "flow":
                _fail("prediction", "flow-velocity prediction needs the 'flow' schedule")
            return
        marker = {"diffusers": FROM_SCHEDULER_CONFIG, "analytic": BUILTIN}.get(self.format)
        if p != marker or self.schedule != marker:
            known = PREDICTIONS + ((marker,) if marker else ())
            _fail("prediction", f"unknown prediction type {p!r} for format {self.format!r}; known: {known}")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["sample_shape"] = list(self.sample_shape)
        d["image_shape"] = None if self.image_shape is None else list(self.image_shape)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ModelSpec":
        names = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - names)
        if unknown:
            _fail(unknown[0], f"unknown field; known: {sorted(names)}")
        missing = sorted(n for n in ("key", "format", "location", "schedule", "prediction", "sample_shape") if n not in d)
        if missing:
            _fail(missing[0], "missing")
        return cls(**d)  # shapes become tuples in __post_init__
