"""Load a catalog model into ld3core's denoiser contract, refusing anything unsafe or inconsistent.

Every file is checked before it is read: it must lie under the model root and match the
catalog's sha256. Weights are tensors only (safetensors; pickles only when an operator sets
``allow_pickle``, and then ``torch.load(weights_only=True)``). The loaded network is frozen
(``requires_grad_(False)``, eval mode): LD3 backpropagates through it to the time steps only.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor, nn

from ld3core.denoisers import Denoiser, GuidedDenoiser, NetworkDenoiser
from ld3core.models import load_builtin
from ld3core.schedules import NoiseSchedule, RectifiedFlow, VPDiscrete, schedule_from_config

from .architectures import ARCHITECTURES
from .catalog import ModelSpec, check_location

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
DIFFUSERS_PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}


class ModelLoadError(ValueError):
    """A catalog model that cannot be loaded: missing, tampered with, inconsistent or refused."""


@dataclass(frozen=True)
class LoadedModel:
    """A frozen network in ld3core's terms.

    ``denoiser`` is ready for unconditional models; conditional ones (``class``) build one per
    batch of labels with ``guided``. ``net(x, model_time, *cond) -> prediction``.
    """

    spec: ModelSpec
    denoiser: Denoiser | None
    schedule: NoiseSchedule
    prediction: str
    sample_shape: tuple[int, ...]
    net: Callable[..., Tensor] | None = None
    model_time: Callable[[Tensor], Tensor] | None = None
    module: nn.Module | None = None

    def guided(self, cond: Tensor, uncond: Tensor, scale: float) -> GuidedDenoiser:
        """Classifier-free guidance with one condition per sample (``cond``, ``uncond``: (B, ...))."""
        if self.net is None:
            raise ModelLoadError(f"model {self.spec.key!r} has no conditional network")
        return GuidedDenoiser(self.net, self.schedule, self.prediction, cond, uncond, scale, self.model_time)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def weights_sha256(path: str | Path) -> str:
    """The catalog hash of a weights file, or of a model folder's weight files.

    A folder with one weights file hashes as that file (so ``sha256sum`` agrees); with several,
    as the sha256 of the lines ``"<relative path> <file sha256>\\n"`` in sorted order.
    """
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise ModelLoadError(f"no weights files ({', '.join(WEIGHT_SUFFIXES)}) under {path}")
    if len(files) == 1:
        return sha256_file(files[0])
    lines = "".join(f"{p.relative_to(path).as_posix()} {sha256_file(p)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def resolve_location(spec: ModelSpec, model_root: str | Path) -> Path:
    """The spec's path under ``model_root``; refuses paths (or symlinks) that leave the root."""
    try:
        check_location(spec.location)
    except ValueError as e:
        raise ModelLoadError(str(e)) from None
    root = Path(model_root).resolve()
    path = (root / spec.location).resolve()
    if not path.is_relative_to(root):
        raise ModelLoadError(f"model {spec.key!r}: location {spec.location!r} resolves to {path}, outside the model root {root}")
    if not path.exists():
        raise ModelLoadError(f"model {spec.key!r}: {path} does not exist")
    return path


def verify_sha256(spec: ModelSpec, path: Path) -> None:
    actual = weights_sha256(path)
    if actual != spec.sha256:
        raise ModelLoadError(f"model {spec.key!r}: sha256 mismatch for {path}: expected {spec.sha256}, actual {actual}")


def freeze(module: nn.Module) -> nn.Module:
    module.requires_grad_(False)
    return module.eval()


def load_model(spec: ModelSpec, model_root: str | Path, *, allow_pickle: bool = False, device: str | torch.device = "cpu") -> LoadedModel:
    """Load ``spec`` from ``model_root``; raises ``ModelLoadError`` naming what is wrong."""
    if spec.format == "analytic":
        return _load_analytic(spec)
    if spec.format == "pickle" and not allow_pickle:
        raise ModelLoadError(
            f"model {spec.key!r}: pickle weights can run code on load and are refused; "
            "an operator may enable them (allow_pickle=True), or convert the weights to safetensors"
        )
    loaders = {"diffusers": _load_diffusers, "safetensors": _load_state_dict, "pickle": _load_state_dict}
    if spec.format not in loaders:
        raise ModelLoadError(f"model {spec.key!r}: unknown format {spec.format!r}; known: {sorted(loaders) + ['analytic']}")
    path = resolve_location(spec, model_root)
    verify_sha256(spec, path)
    return loaders[spec.format](spec, path, torch.device(device), allow_pickle)


def _check_shape(spec: ModelSpec, shape: tuple[int, ...]) -> None:
    if tuple(shape) != spec.sample_shape:
        raise ModelLoadError(f"model {spec.key!r}: catalog sample_shape {spec.sample_shape} but the model has {tuple(shape)}")


def _wrap(spec: ModelSpec, net: Callable[..., Tensor], schedule: NoiseSchedule, prediction: str, model_time=None, module=None) -> LoadedModel:
    if spec.prediction in ("eps", "x0", "v", "flow") and spec.prediction != prediction:
        raise ModelLoadError(f"model {spec.key!r}: catalog prediction {spec.prediction!r} but the model predicts {prediction!r}")
    denoiser = NetworkDenoiser(net, schedule, prediction, model_time) if spec.conditioning == "none" else None
    return LoadedModel(spec, denoiser, schedule, prediction, spec.sample_shape, net, model_time, module)


def _load_analytic(spec: ModelSpec) -> LoadedModel:
    try:
        builtin = load_builtin(spec.location)
    except ValueError as e:
        raise ModelLoadError(f"model {spec.key!r}: {e}") from None
    _check_shape(spec, builtin.sample_shape)
    schedule = builtin.denoiser.schedule
    if isinstance(spec.schedule, dict) and spec.schedule != schedule.config():
        raise ModelLoadError(f"model {spec.key!r}: catalog schedule {spec.schedule.get('name')!r} differs from the built-in {schedule.config()['name']!r}")
    if spec.prediction not in ("x0", "builtin"):
        raise ModelLoadError(f"model {spec.key!r}: analytic models predict 'x0', not {spec.prediction!r}")
    return LoadedModel(spec, builtin.denoiser, schedule, "x0", builtin.sample_shape)


def _load_state_dict(spec: ModelSpec, path: Path, device: torch.device, allow_pickle: bool) -> LoadedModel:
    if spec.architecture not in ARCHITECTURES:
        raise ModelLoadError(f"model {spec.key!r}: unknown architecture {spec.architecture!r}; known: {sorted(ARCHITECTURES)}")
    if not path.is_file():
        raise ModelLoadError(f"model {spec.key!r}: {path} is not a weights file")
    if spec.format == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path, device=str(device))
        except (SafetensorError, OSError) as e:
            raise ModelLoadError(f"model {spec.key!r}: {path} is not a safetensors file: {e}") from None
    else:  # pickle, enabled by the operator: still tensors only.
        try:
            state = torch.load(path, map_location=device, weights_only=True)
        except Exception as e:  # noqa: BLE001 - torch raises UnpicklingError, RuntimeError, ...
            raise ModelLoadError(f"model {spec.key!r}: {path} is not a weights-only state dict: {e}") from None
        if not isinstance(state, dict):
            raise ModelLoadError(f"model {spec.key!r}: {path} holds a {type(state).__name__}, not a state dict")
    net = ARCHITECTURES[spec.architecture](spec.sample_shape)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ModelLoadError(f"model {spec.key!r}: weights in {path} do not fit architecture {spec.architecture!r}: {e}") from None
    net = freeze(net.to(device))
    return _wrap(spec, net, schedule_from_config(spec.schedule), spec.prediction, module=net)


def scheduler_schedule(cfg: dict[str, Any]) -> tuple[NoiseSchedule, str, Callable[[Tensor], Tensor] | None]:
    """(schedule, prediction, model_time) from a diffusers ``scheduler_config.json``."""
    import diffusers

    name = cfg.get("_class_name", "")
    if "FlowMatch" in name:
        n = float(cfg.get("num_train_timesteps", 1000))
        return RectifiedFlow(), "flow", lambda t: t * n  # diffusers flow timesteps = sigma * N
    cls = getattr(diffusers, name, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, diffusers.SchedulerMixin):
        raise ModelLoadError(f"unknown diffusers scheduler {name!r}")
    scheduler = cls.from_config(cfg)
    if not hasattr(scheduler, "alphas_cumprod"):
        raise ModelLoadError(f"scheduler {name!r} has no alphas_cumprod; only VP and flow-matching schedulers are supported")
    kind = cfg.get("prediction_type", "epsilon")
    if kind not in DIFFUSERS_PREDICTIONS:
        raise ModelLoadError(f"unknown diffusers prediction_type {kind!r}; known: {sorted(DIFFUSERS_PREDICTIONS)}")
    return VPDiscrete(scheduler.alphas_cumprod), DIFFUSERS_PREDICTIONS[kind], None


def _load_diffusers(spec: ModelSpec, path: Path, device: torch.device, allow_pickle: bool) -> LoadedModel:
    for name in ("config.json", "scheduler_config.json"):
        if not (path / name).is_file():
            raise ModelLoadError(f"model {spec.key!r}: {path / name} is missing (a diffusers model folder needs it)")
    model_cfg = json.loads((path / "config.json").read_text())
    sched_cfg = json.loads((path / "scheduler_config.json").read_text())
    if model_cfg.get("_class_name") != "UNet2DModel":
        raise ModelLoadError(f"model {spec.key!r}: diffusers model class {model_cfg.get('_class_name')!r} is not supported yet (UNet2DModel)")
    os.environ["HF_HUB_OFFLINE"] = "1"  # read by huggingface_hub at import; local_files_only holds regardless
    from diffusers import UNet2DModel

    schedule, prediction, model_time = scheduler_schedule(sched_cfg)
    try:
        unet = UNet2DModel.from_pretrained(path, local_files_only=True, use_safetensors=not allow_pickle)
    except (OSError, EnvironmentError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"model {spec.key!r}: cannot load the diffusers folder {path}: {e}") from None
    unet = freeze(unet.to(device))
    size = unet.config.sample_size
    hw = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
    _check_shape(spec, (unet.config.in_channels, *hw))
    if spec.conditioning == "class" and unet.config.num_class_embeds is None and unet.config.class_embed_type is None:
        raise ModelLoadError(f"model {spec.key!r}: catalog says class-conditional but the UNet has no class embedding")
    if spec.conditioning == "text":
        raise ModelLoadError(f"model {spec.key!r}: a UNet2DModel takes no text prompts")

    def net(x: Tensor, t: Tensor, *cond: Tensor) -> Tensor:
        return unet(x, t, class_labels=cond[0] if cond else None).sample

    return _wrap(spec, net, schedule, prediction, model_time, unet)
