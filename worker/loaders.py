"""Load a catalog model into ld3core's denoiser contract, refusing anything unsafe or inconsistent.

Every file is checked before it is read: it must lie under the model root, symlinks followed
(a model folder's every file and subfolder, not the folder alone), and match the catalog's
sha256. Weights are tensors only (safetensors; pickles only when an operator sets
``allow_pickle``, and then ``torch.load(weights_only=True)``). The loaded network is frozen
(``requires_grad_(False)``, eval mode): LD3 backpropagates through it to the time steps only.

Diffusers folders come in two layouts: a flat model folder (``config.json``, weights,
``scheduler_config.json``; a ``UNet2DModel``, optionally with class embeddings) and a pipeline
folder (``model_index.json`` with ``unet/``, ``scheduler/`` and, for latent models, ``vae/``; a
Stable-Diffusion-style text pipeline adds ``text_encoder/`` and ``tokenizer/``). Only the
classes named here are ever instantiated, whatever ``model_index.json`` says.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor, nn

from ld3core.denoisers import Denoiser, GuidedDenoiser, GuidedNetwork, NetworkDenoiser
from ld3core.files import file_sha256
from ld3core.models import load_builtin
from ld3core.schedules import NoiseSchedule, RectifiedFlow, VPDiscrete, schedule_from_config
from registry.catalog import ModelSpec, check_location

from .architectures import ARCHITECTURES

WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt")
DIFFUSERS_PREDICTIONS = {"epsilon": "eps", "sample": "x0", "v_prediction": "v"}


class ModelLoadError(ValueError):
    """A catalog model that cannot be loaded: missing, tampered with, inconsistent or refused."""


class PromptEncoder:
    """A frozen CLIP tokenizer + text encoder: prompts -> embeddings (n, L, D) (the last hidden
    state at the tokenizer's full length, as Stable Diffusion conditions its UNet)."""

    def __init__(self, tokenizer: Any, text_encoder: nn.Module) -> None:
        self.tokenizer, self.text_encoder = tokenizer, text_encoder

    @torch.no_grad()
    def __call__(self, prompts: Sequence[str]) -> Tensor:
        if isinstance(prompts, str):
            raise TypeError("prompts must be a sequence of strings, not one string")
        ids = self.tokenizer(list(prompts), padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        device = next(self.text_encoder.parameters()).device
        return self.text_encoder(ids.to(device)).last_hidden_state


@dataclass(frozen=True)
class LoadedModel:
    """A frozen network in ld3core's terms.

    ``denoiser`` is ready for unconditional models; conditional ones (``class``, ``text``) give a
    conditional denoiser with ``conditional(guidance)``: per-sample conditions (labels (n,),
    embeddings (n, L, D) from ``encode_prompts``) bound per batch, with classifier-free guidance
    against ``null_cond`` (the null label, the empty prompt's embedding). ``net(x, model_time,
    *cond) -> prediction``. Latent models (a ``vae``) sample in latent space (``sample_shape``)
    and ``decode`` to images (``image_shape``); for pixel models ``image_shape == sample_shape``.
    """

    spec: ModelSpec
    denoiser: Denoiser | None
    schedule: NoiseSchedule
    prediction: str
    sample_shape: tuple[int, ...]
    net: Callable[..., Tensor] | None = None
    model_time: Callable[[Tensor], Tensor] | None = None
    module: nn.Module | None = None
    null_cond: Tensor | None = None
    vae: nn.Module | None = None
    prompt_encoder: PromptEncoder | None = None
    image_shape: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if not self.image_shape:
            object.__setattr__(self, "image_shape", self.sample_shape)

    @property
    def conditioning(self) -> str:
        return self.spec.conditioning

    @property
    def latent(self) -> bool:
        return self.vae is not None

    def conditional(self, guidance: float = 1.0) -> GuidedNetwork:
        """The conditional denoiser at guidance scale ``guidance`` (1: the conditional model alone)."""
        if self.net is None or self.null_cond is None:
            raise ModelLoadError(f"model {self.spec.key!r} is unconditional")
        return GuidedNetwork(self.net, self.schedule, self.prediction, self.null_cond, guidance, self.model_time)

    def guided(self, cond: Tensor, uncond: Tensor, scale: float) -> GuidedDenoiser:
        """Classifier-free guidance with one condition per sample (``cond``, ``uncond``: (B, ...))."""
        if self.net is None:
            raise ModelLoadError(f"model {self.spec.key!r} has no conditional network")
        return GuidedDenoiser(self.net, self.schedule, self.prediction, cond, uncond, scale, self.model_time)

    def encode_prompts(self, prompts: Sequence[str]) -> Tensor:
        """Text embeddings (n, L, D) of ``prompts`` for a text-conditional model."""
        if self.prompt_encoder is None:
            raise ModelLoadError(f"model {self.spec.key!r} takes no text prompts (conditioning {self.conditioning!r})")
        return self.prompt_encoder(prompts)

    def decode(self, latents: Tensor) -> Tensor:
        """A latent model's images (B, *image_shape), nominally in [-1, 1] (not clamped, so that
        gradients flow): the VAE decoder at ``latents / scaling_factor + shift_factor``."""
        if self.vae is None:
            raise ModelLoadError(f"model {self.spec.key!r} is a pixel-space model; there is nothing to decode")
        cfg = self.vae.config
        z = latents / cfg.scaling_factor + (cfg.shift_factor or 0.0)
        return self.vae.decode(z.to(next(self.vae.parameters()).dtype)).sample


def weights_sha256(path: str | Path) -> str:
    """The catalog hash of a weights file, or of a model folder's weight files.

    A folder's weight files are every file whose name ends in one of ``WEIGHT_SUFFIXES``, in
    the folder and all its subfolders (a pipeline's ``unet/``, ``vae/``, ``text_encoder/``).
    A folder with one weights file hashes as that file (so ``sha256sum`` agrees); with several,
    as the sha256 of the lines ``"<relative POSIX path> <file sha256>\\n"`` sorted by path, so
    that the digest covers both the contents and where each file sits. Configs, scheduler and
    tokenizer files are not hashed; the loader checks what they declare against the network.
    """
    path = Path(path)
    if path.is_file():
        return file_sha256(path)
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.name.endswith(WEIGHT_SUFFIXES))
    if not files:
        raise ModelLoadError(f"no weights files ({', '.join(WEIGHT_SUFFIXES)}) under {path}")
    if len(files) == 1:
        return file_sha256(files[0])
    lines = "".join(f"{p.relative_to(path).as_posix()} {file_sha256(p)}\n" for p in files)
    return hashlib.sha256(lines.encode()).hexdigest()


def resolve_location(spec: ModelSpec, model_root: str | Path) -> Path:
    """The spec's path under ``model_root``; refuses a location, or anything in a model folder, whose
    real path (symlinks followed) leaves the root: the hash and the loaders read every file there."""
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
    if path.is_dir():
        _check_folder_stays_in(spec, path, root)
    return path


def _check_folder_stays_in(spec: ModelSpec, folder: Path, root: Path) -> None:
    """Every file and subfolder under ``folder``, links followed (each real folder once), resolves inside ``root``."""
    walked: set[Path] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        real_dir = Path(dirpath).resolve()
        if real_dir in walked:  # a link back up the tree
            dirnames.clear()
            continue
        walked.add(real_dir)
        for name in dirnames + filenames:
            entry = Path(dirpath) / name
            real = entry.resolve()
            if not real.is_relative_to(root):
                raise ModelLoadError(f"model {spec.key!r}: {entry} resolves to {real}, outside the model root {root}")


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


def _check_shape(spec: ModelSpec, shape: tuple[int, ...], field: str = "sample_shape") -> None:
    expected = spec.sample_shape if field == "sample_shape" else spec.image_shape
    if tuple(shape) != expected:
        raise ModelLoadError(f"model {spec.key!r}: catalog {field} {expected} but the model has {tuple(shape)}")


def _wrap(spec: ModelSpec, net: Callable[..., Tensor], schedule: NoiseSchedule, prediction: str, model_time=None,
          module=None, **extras: Any) -> LoadedModel:
    if spec.prediction in ("eps", "x0", "v", "flow") and spec.prediction != prediction:
        raise ModelLoadError(f"model {spec.key!r}: catalog prediction {spec.prediction!r} but the model predicts {prediction!r}")
    denoiser = NetworkDenoiser(net, schedule, prediction, model_time) if spec.conditioning == "none" else None
    return LoadedModel(spec, denoiser, schedule, prediction, spec.sample_shape, net, model_time, module, **extras)


def _load_analytic(spec: ModelSpec) -> LoadedModel:
    try:
        builtin = load_builtin(spec.location)
    except ValueError as e:
        raise ModelLoadError(f"model {spec.key!r}: {e}") from None
    _check_shape(spec, builtin.sample_shape)
    schedule = builtin.denoiser.schedule
    if isinstance(spec.schedule, dict) and spec.schedule != schedule.config():
        raise ModelLoadError(f"model {spec.key!r}: catalog schedule {spec.schedule.get('name')!r} differs from the "
                             f"built-in {schedule.config()['name']!r}")
    if spec.prediction not in ("x0", "builtin"):
        raise ModelLoadError(f"model {spec.key!r}: analytic models predict 'x0', not {spec.prediction!r}")
    return LoadedModel(spec, builtin.denoiser, schedule, "x0", builtin.sample_shape)


def _load_state_dict(spec: ModelSpec, path: Path, device: torch.device, allow_pickle: bool) -> LoadedModel:
    if spec.architecture not in ARCHITECTURES:
        raise ModelLoadError(f"model {spec.key!r}: unknown architecture {spec.architecture!r}; known: {sorted(ARCHITECTURES)}")
    if spec.conditioning != "none":
        raise ModelLoadError(f"model {spec.key!r}: registered architectures are unconditional, not {spec.conditioning!r}")
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


def _read_json(spec: ModelSpec, path: Path, why: str) -> dict[str, Any]:
    if not path.is_file():
        raise ModelLoadError(f"model {spec.key!r}: {path} is missing ({why})")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelLoadError(f"model {spec.key!r}: {path} is not valid JSON: {e}") from None


def _from_pretrained(spec: ModelSpec, cls: Any, path: Path, allow_pickle: bool, device: torch.device) -> nn.Module:
    """``cls.from_pretrained`` from a local folder only, safetensors unless pickles are allowed; frozen."""
    try:
        module = cls.from_pretrained(path, local_files_only=True, use_safetensors=True if not allow_pickle else None)
    except (OSError, EnvironmentError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"model {spec.key!r}: cannot load {cls.__name__} from {path}: {e}") from None
    return freeze(module.to(device))


def _spatial(size: Any) -> tuple[int, int]:
    return tuple(size) if isinstance(size, (list, tuple)) else (size, size)  # type: ignore[return-value]


def _check_unet(spec: ModelSpec, unet: nn.Module) -> None:
    """Sample shape, no learned variance, and the conditioning the catalog promises."""
    cfg = unet.config
    _check_shape(spec, (cfg.in_channels, *_spatial(cfg.sample_size)))
    if cfg.out_channels != cfg.in_channels:
        raise ModelLoadError(f"model {spec.key!r}: the UNet has {cfg.out_channels} output channels for {cfg.in_channels} "
                             "input channels (learned variance is not supported)")
    if type(unet).__name__ == "UNet2DConditionModel":
        if spec.conditioning != "text":
            raise ModelLoadError(f"model {spec.key!r}: a UNet2DConditionModel takes text embeddings; the catalog "
                                 f"conditioning must be 'text', not {spec.conditioning!r}")
        return
    if spec.conditioning == "text":
        raise ModelLoadError(f"model {spec.key!r}: a UNet2DModel takes no text prompts")
    embeds = cfg.num_class_embeds if cfg.class_embed_type is None else None
    if spec.conditioning == "class":
        if embeds is None:
            raise ModelLoadError(f"model {spec.key!r}: catalog says class-conditional but the UNet has no class embedding")
        if spec.num_classes > embeds or spec.null_class >= embeds:
            raise ModelLoadError(f"model {spec.key!r}: catalog num_classes {spec.num_classes} and null_class "
                                 f"{spec.null_class} need labels up to {max(spec.num_classes - 1, spec.null_class)}, "
                                 f"but the UNet embeds {embeds} labels (num_class_embeds)")
    elif cfg.num_class_embeds is not None or cfg.class_embed_type is not None:
        raise ModelLoadError(f"model {spec.key!r}: the UNet has a class embedding but the catalog conditioning is "
                             f"{spec.conditioning!r} (give conditioning 'class' with num_classes and null_class)")


def _unet_net(unet: nn.Module) -> Callable[..., Tensor]:
    """``net(x, model_time, *cond)``: class labels or text embeddings, as the UNet takes them."""
    if type(unet).__name__ == "UNet2DConditionModel":
        return lambda x, t, cond: unet(x, t, encoder_hidden_states=cond).sample
    return lambda x, t, *cond: unet(x, t, class_labels=cond[0] if cond else None).sample


def _load_diffusers(spec: ModelSpec, path: Path, device: torch.device, allow_pickle: bool) -> LoadedModel:
    os.environ["HF_HUB_OFFLINE"] = "1"  # read by huggingface_hub at import; local_files_only holds regardless
    if (path / "model_index.json").is_file():
        return _load_pipeline(spec, path, device, allow_pickle)
    for name in ("config.json", "scheduler_config.json"):
        if not (path / name).is_file():
            raise ModelLoadError(f"model {spec.key!r}: {path / name} is missing (a diffusers model folder needs it)")
    model_cfg = json.loads((path / "config.json").read_text())
    sched_cfg = json.loads((path / "scheduler_config.json").read_text())
    cls_name = model_cfg.get("_class_name")
    if cls_name == "UNet2DConditionModel":
        raise ModelLoadError(f"model {spec.key!r}: a UNet2DConditionModel needs its text encoder; give a pipeline folder "
                             "(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/)")
    if cls_name != "UNet2DModel":
        raise ModelLoadError(f"model {spec.key!r}: diffusers model class {cls_name!r} is not supported (UNet2DModel)")
    if spec.image_shape is not None:
        raise ModelLoadError(f"model {spec.key!r}: catalog image_shape is for latent models, but {path} is a flat "
                             "UNet folder with no VAE (a latent model is a pipeline folder with vae/)")
    from diffusers import UNet2DModel

    schedule, prediction, model_time = scheduler_schedule(sched_cfg)
    unet = _from_pretrained(spec, UNet2DModel, path, allow_pickle, device)
    _check_unet(spec, unet)
    return _wrap(spec, _unet_net(unet), schedule, prediction, model_time, unet, null_cond=_null_label(spec, device))


def _null_label(spec: ModelSpec, device: torch.device) -> Tensor | None:
    return torch.tensor(spec.null_class, dtype=torch.long, device=device) if spec.conditioning == "class" else None


# Pipeline folders: the components we load and the only classes allowed for each.
PIPELINE_CLASSES = {
    "unet": ("UNet2DModel", "UNet2DConditionModel"),
    "vae": ("AutoencoderKL",),
    "text_encoder": ("CLIPTextModel",),
    "tokenizer": ("CLIPTokenizer", "CLIPTokenizerFast"),
}


def _load_pipeline(spec: ModelSpec, path: Path, device: torch.device, allow_pickle: bool) -> LoadedModel:
    """A pipeline folder: ``unet/`` + ``scheduler/`` [+ ``vae/``] [+ ``text_encoder/`` + ``tokenizer/``]."""
    index = _read_json(spec, path / "model_index.json", "a pipeline folder needs it")
    for name, allowed in PIPELINE_CLASSES.items():
        entry = index.get(name)
        if isinstance(entry, list) and len(entry) == 2 and entry[1] is not None and entry[1] not in allowed:
            raise ModelLoadError(f"model {spec.key!r}: model_index.json names {entry[1]!r} for {name}; supported: {list(allowed)}")

    def folder(name: str, why: str) -> Path:
        if not (path / name).is_dir():
            raise ModelLoadError(f"model {spec.key!r}: {path / name} is missing ({why})")
        return path / name

    unet_cfg = _read_json(spec, folder("unet", "the denoising network") / "config.json", "the UNet's config")
    sched_cfg = _read_json(spec, folder("scheduler", "the noise schedule") / "scheduler_config.json", "the noise schedule")
    unet_cls = unet_cfg.get("_class_name")
    if unet_cls not in PIPELINE_CLASSES["unet"]:
        raise ModelLoadError(f"model {spec.key!r}: unet class {unet_cls!r} is not supported; supported: {list(PIPELINE_CLASSES['unet'])}")
    latent = spec.image_shape is not None or "vae" in index or spec.conditioning == "text"
    if latent and spec.image_shape is None:
        raise ModelLoadError(f"model {spec.key!r}: catalog image_shape is required for a latent model (the decoded image shape)")
    import diffusers

    schedule, prediction, model_time = scheduler_schedule(sched_cfg)
    unet = _from_pretrained(spec, getattr(diffusers, unet_cls), path / "unet", allow_pickle, device)
    _check_unet(spec, unet)
    extras: dict[str, Any] = {"null_cond": _null_label(spec, device)}
    if latent:
        vae_dir = folder("vae", "a latent model decodes with its AutoencoderKL")
        vae_cls = _read_json(spec, vae_dir / "config.json", "the VAE's config").get("_class_name")
        if vae_cls != "AutoencoderKL":
            raise ModelLoadError(f"model {spec.key!r}: vae class {vae_cls!r} is not supported (AutoencoderKL)")
        vae = _from_pretrained(spec, diffusers.AutoencoderKL, vae_dir, allow_pickle, device)
        _check_vae(spec, vae, unet)
        extras.update(vae=vae, image_shape=spec.image_shape)
    if spec.conditioning == "text":
        extras["prompt_encoder"] = _load_prompt_encoder(spec, path, device, allow_pickle, unet)
        extras["null_cond"] = extras["prompt_encoder"]([""])[0]
    return _wrap(spec, _unet_net(unet), schedule, prediction, model_time, unet, **extras)


def _check_vae(spec: ModelSpec, vae: nn.Module, unet: nn.Module) -> None:
    cfg = vae.config
    if cfg.latent_channels != unet.config.in_channels:
        raise ModelLoadError(f"model {spec.key!r}: the VAE has {cfg.latent_channels} latent channels, the UNet takes {unet.config.in_channels}")
    if getattr(cfg, "latents_mean", None) is not None or getattr(cfg, "latents_std", None) is not None:
        raise ModelLoadError(f"model {spec.key!r}: VAEs with latents_mean/latents_std are not supported")
    factor = 2 ** (len(cfg.block_out_channels) - 1)
    h, w = _spatial(unet.config.sample_size)
    _check_shape(spec, (cfg.out_channels, h * factor, w * factor), "image_shape")


def _load_prompt_encoder(spec: ModelSpec, path: Path, device: torch.device, allow_pickle: bool, unet: nn.Module) -> PromptEncoder:
    """CLIP tokenizer (vocabulary and merges: data, no code) and CLIPTextModel from the pipeline folder."""
    for name, why in (("text_encoder", "a text-conditional pipeline encodes prompts with it"),
                      ("tokenizer", "a text-conditional pipeline tokenizes prompts with it")):
        if not (path / name).is_dir():
            raise ModelLoadError(f"model {spec.key!r}: {path / name} is missing ({why})")
    te_cfg = _read_json(spec, path / "text_encoder" / "config.json", "the text encoder's config")
    archs = te_cfg.get("architectures") or ["CLIPTextModel"]
    if archs != ["CLIPTextModel"]:
        raise ModelLoadError(f"model {spec.key!r}: text encoder {archs} is not supported (CLIPTextModel)")
    from transformers import CLIPTextModel, CLIPTokenizer

    text_encoder = _from_pretrained(spec, CLIPTextModel, path / "text_encoder", allow_pickle, device)
    try:
        tokenizer = CLIPTokenizer.from_pretrained(path / "tokenizer", local_files_only=True)
    except (OSError, EnvironmentError, ValueError, TypeError) as e:
        raise ModelLoadError(f"model {spec.key!r}: cannot load the CLIP tokenizer from {path / 'tokenizer'}: {e}") from None
    width = text_encoder.config.hidden_size
    if unet.config.cross_attention_dim != width:
        raise ModelLoadError(f"model {spec.key!r}: the UNet attends to {unet.config.cross_attention_dim}-wide text "
                             f"embeddings, the text encoder gives {width}")
    if tokenizer.model_max_length > text_encoder.config.max_position_embeddings:
        raise ModelLoadError(f"model {spec.key!r}: tokenizer length {tokenizer.model_max_length} exceeds the text "
                             f"encoder's {text_encoder.config.max_position_embeddings} positions")
    return PromptEncoder(tokenizer, text_encoder)
