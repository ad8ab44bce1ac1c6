"""Train the small real diffusion models that ship in ``models/`` (issue 3, item 2).

    python scripts/train_models.py ddpm-digits   --out models/ddpm-digits [--minutes 20] [--steps S] [common options]
    python scripts/train_models.py digits-cfg    --out models/digits-cfg    [common options]
    python scripts/train_models.py digits-flow   --out models/digits-flow   [common options]
    python scripts/train_models.py digits-latent --out models/digits-latent [--vae-steps S] [common options]
    python scripts/train_models.py all --out-root models [--device cuda] [--parallel] [--steps S] [--vae-steps S]
    python scripts/train_models.py samples models/digits-cfg [--nfe 50] [--n 64] [--guidance 2.0]

Common options: ``--device cpu|cuda`` (default cuda when available), ``--steps``, ``--seed``,
``--batch-size``, ``--log-every``, ``--threads``. Every model is trained on
``sklearn.datasets.load_digits`` (ships with scikit-learn) and saved as a diffusers folder
with safetensors weights and a ``MODEL_CARD.md``:

- ``ddpm-digits``: pixel DDPM, eps-prediction, VP discrete (1000 steps, linear betas), 1x16x16.
- ``digits-cfg``: the same, class-conditional (labels 0-9, null label 10 dropped in with
  probability 0.1 for classifier-free guidance).
- ``digits-flow``: rectified flow, x_t = (1 - t) x0 + t eps, velocity eps - x0, model time 1000 t.
- ``digits-latent``: a tiny ``AutoencoderKL`` (1x32x32 -> 4x8x8) and an eps UNet on its scaled
  latents; pipeline folder ``model_index.json``, ``unet/``, ``vae/``, ``scheduler/``.

``all`` trains the last three, writes their catalog entries into ``<out-root>/catalog.json``
and a sample grid into each folder. ``samples``: a PNG grid sampled with ld3core's UniPC.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a checkout without installing
os.environ.setdefault("HF_HUB_OFFLINE", "1")

N_TRAIN_STEPS = 1000
NUM_CLASSES, NULL_CLASS, P_UNCOND = 10, 10, 0.1
NEW_MODELS = ("digits-cfg", "digits-flow", "digits-latent")
QUALITY_PLACEHOLDER = "Quality: to be measured by benchmarks/quality_models.py"

from worker.digits import load_digits  # noqa: E402 - after the sys.path line: runs from a checkout

# Data.

def load_digits_16() -> Tensor:
    """(1797, 1, 16, 16) float32 in [-1, 1]: sklearn digits upsampled 8 -> 16 px."""
    return load_digits(16)[0]


# Networks and schedulers.

def build_unet(*, in_channels: int = 1, sample_size: int = 16, num_class_embeds: int | None = None):
    """~1.1M parameters: 16 -> 8 -> 4 px, self-attention only at 4x4 where it costs little."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=sample_size,
        in_channels=in_channels,
        out_channels=in_channels,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,  # 32 groups of one channel each would be instance norm at width 32
        attention_head_dim=32,
        num_class_embeds=num_class_embeds,
    )


def build_latent_unet():
    """~1.6M parameters on 4x8x8 latents: 8 -> 4 -> 2, attention at 4x4 and 2x2."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(64, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
        attention_head_dim=32,
    )


def build_vae():
    """~0.68M parameters: 1x32x32 -> 4x8x8 (two downsamplings), attention in the 8x8 mid block.

    Narrow at 32x32 (16 channels), where a CPU spends most of its time."""
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=1,
        out_channels=1,
        down_block_types=("DownEncoderBlock2D",) * 3,
        up_block_types=("UpDecoderBlock2D",) * 3,
        block_out_channels=(16, 32, 64),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=8,
        sample_size=32,
    )


def build_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=N_TRAIN_STEPS, beta_schedule="linear", prediction_type="epsilon")


def build_flow_scheduler():
    from diffusers import FlowMatchEulerDiscreteScheduler

    return FlowMatchEulerDiscreteScheduler(num_train_timesteps=N_TRAIN_STEPS, shift=1.0)


# Training targets: what a perfect network outputs (the loaders invert exactly these).

def vp_noising(x0: Tensor, eps: Tensor, k: Tensor, alphas_cumprod: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """DDPM at integer step k: (x_k = sqrt(abar) x0 + sqrt(1 - abar) eps, target eps, model time k)."""
    abar = alphas_cumprod[k].view(-1, *(1,) * (x0.ndim - 1))
    return abar.sqrt() * x0 + (1 - abar).sqrt() * eps, eps, k


def flow_noising(x0: Tensor, eps: Tensor, t: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Rectified flow at t in [0, 1]: (x_t = (1 - t) x0 + t eps, velocity eps - x0, model time 1000 t)."""
    tb = t.view(-1, *(1,) * (x0.ndim - 1))
    return (1 - tb) * x0 + tb * eps, eps - x0, t * N_TRAIN_STEPS


def drop_labels(labels: Tensor, gen: torch.Generator) -> Tensor:
    """Classifier-free guidance training: each label becomes the null label with probability P_UNCOND."""
    drop = torch.rand(labels.shape, generator=gen, device=labels.device) < P_UNCOND
    return torch.where(drop, torch.full_like(labels, NULL_CLASS), labels)


def eps_loss(unet, x0: Tensor, alphas_cumprod: Tensor, gen: torch.Generator, labels: Tensor | None = None) -> Tensor:
    """Standard DDPM loss: MSE of the predicted noise at uniformly drawn integer timesteps."""
    k = torch.randint(0, N_TRAIN_STEPS, (x0.shape[0],), generator=gen, device=x0.device)
    eps = torch.randn(x0.shape, generator=gen, device=x0.device)
    xt, target, tm = vp_noising(x0, eps, k, alphas_cumprod)
    return F.mse_loss(unet(xt, tm, class_labels=labels).sample, target)


def flow_loss(unet, x0: Tensor, gen: torch.Generator) -> Tensor:
    """Conditional flow matching with t ~ U(0, 1) (Lipman et al. 2023; Liu et al. 2023)."""
    t = torch.rand((x0.shape[0],), generator=gen, device=x0.device)
    eps = torch.randn(x0.shape, generator=gen, device=x0.device)
    xt, target, tm = flow_noising(x0, eps, t)
    return F.mse_loss(unet(xt, tm).sample, target)


def vae_loss(vae, x: Tensor, gen: torch.Generator, kl_weight: float) -> Tensor:
    """Reconstruction MSE of a posterior sample plus a small KL to N(0, I), both per element."""
    post = vae.encode(x).latent_dist
    z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen, device=x.device)
    kl = 0.5 * (post.mean.square() + post.var - 1.0 - post.logvar).mean()
    return F.mse_loss(vae.decode(z).sample, x) + kl_weight * kl


# The training loop.

@dataclass(frozen=True)
class Fit:
    """Optimisation settings shared by every model (AdamW, linear warm-up then constant, EMA)."""

    steps: int | None
    batch_size: int
    lr: float = 5e-4
    warmup: int = 200
    ema_decay: float = 0.999
    log_every: int = 100
    minutes: float | None = None


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, step: int, decay: float) -> float:
    # Warm-up (1+s)/(10+s): early EMA weights would otherwise stay near the random init for
    # ~1/(1-decay) steps, which matters for short runs. One fused op: the GPU is launch-bound.
    d = min(decay, (1 + step) / (10 + step))
    torch._foreach_lerp_(list(ema.parameters()), list(model.parameters()), 1 - d)
    return d


def lr_at(step: int, lr: float, warmup: int) -> float:
    # Constant after a linear warm-up: ddpm-digits' run length is set by wall time, so a cosine
    # schedule would not know where it ends; the EMA does the averaging.
    return lr * min(1.0, (step + 1) / warmup)


def fit(model: nn.Module, loss_fn: Callable[[nn.Module, Tensor], Tensor], n_data: int, cfg: Fit,
        gen: torch.Generator, *, name: str) -> tuple[nn.Module, dict]:
    """Train ``model`` on minibatch indices into ``n_data`` items; return (EMA copy, stats).

    ``loss_fn(model, idx)`` draws its own noise from ``gen`` (the same generator that draws the
    indices), so a run is fixed by its seed, its device and ``cfg``.
    """
    if cfg.minutes is None and cfg.steps is None:
        raise ValueError("give --minutes or --steps (or both)")
    dev = next(model.parameters()).device
    model.train()
    ema = copy.deepcopy(model).requires_grad_(False)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0, fused=dev.type == "cuda")
    start = time.monotonic()
    deadline = start + cfg.minutes * 60 if cfg.minutes is not None else math.inf
    step, t_log, s_log = 0, start, 0
    smooth = torch.zeros((), device=dev)  # on the device: no host sync per step
    while (cfg.steps is None or step < cfg.steps) and time.monotonic() < deadline:
        idx = torch.randint(0, n_data, (cfg.batch_size,), generator=gen, device=dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.lr, cfg.warmup)
        loss = loss_fn(model, idx)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, model, step, cfg.ema_decay)
        # A smoothed loss (bias-corrected): one batch's loss at random times is too noisy to read.
        smooth.mul_(0.99).add_(loss.detach(), alpha=0.01)
        step += 1
        if step % cfg.log_every == 0:
            now = time.monotonic()
            print(f"[{name}] step {step:6d}  loss {loss.item():.4f}  smoothed {smooth.item() / (1 - 0.99**step):.4f}  "
                  f"{(step - s_log) / (now - t_log):.1f} steps/s  {now - start:.0f} s", flush=True)
            t_log, s_log = now, step
    wall = time.monotonic() - start
    final = smooth.item() / (1 - 0.99**step) if step else float("nan")
    print(f"[{name}] done: {step} steps in {wall:.1f} s, smoothed loss {final:.4f}", flush=True)
    return ema.eval(), {"steps": step, "wall_s": wall, "final_loss": final, "batch_size": cfg.batch_size,
                        "lr": cfg.lr, "warmup": cfg.warmup, "ema_decay": cfg.ema_decay}


def _setup(seed: int, device: str) -> tuple[torch.device, torch.Generator]:
    torch.manual_seed(seed)  # network initialisation; the data and noise come from the generator
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True
    return dev, torch.Generator(device=dev).manual_seed(seed)


def n_params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


# The models.

def train_ddpm_digits(out: str | Path, *, minutes: float | None = None, steps: int | None = None, seed: int = 0,
                      device: str = "cpu", batch_size: int = 128, log_every: int = 100, command: str = "") -> dict:
    """Pixel DDPM on 16x16 digits; trains until ``minutes`` or ``steps`` (whichever first)."""
    dev, gen = _setup(seed, device)
    data = load_digits_16().to(dev)
    unet = build_unet().to(dev)
    scheduler = build_scheduler()
    abar = scheduler.alphas_cumprod.to(dev, torch.float32)
    ema, stats = fit(unet, lambda m, idx: eps_loss(m, data[idx], abar, gen), data.shape[0],
                     Fit(steps, batch_size, log_every=log_every, minutes=minutes), gen, name="ddpm-digits")
    summary = {**stats, "params": n_params(ema), "device": str(dev), "seed": seed, "command": command}
    save_unet_folder(ema, scheduler, Path(out))
    return write_card(Path(out), "ddpm-digits", summary)


def train_digits_cfg(out: str | Path, *, steps: int, seed: int = 0, device: str = "cpu", batch_size: int = 256,
                     log_every: int = 100, command: str = "") -> dict:
    """Class-conditional pixel DDPM with classifier-free guidance training (null label 10)."""
    dev, gen = _setup(seed, device)
    x, y = load_digits(16)
    data, labels = x.to(dev), y.to(dev)
    unet = build_unet(num_class_embeds=NUM_CLASSES + 1).to(dev)
    scheduler = build_scheduler()
    abar = scheduler.alphas_cumprod.to(dev, torch.float32)

    def loss_fn(m, idx):
        return eps_loss(m, data[idx], abar, gen, labels=drop_labels(labels[idx], gen))

    ema, stats = fit(unet, loss_fn, data.shape[0], Fit(steps, batch_size, log_every=log_every), gen, name="digits-cfg")
    summary = {**stats, "params": n_params(ema), "device": str(dev), "seed": seed, "command": command}
    save_unet_folder(ema, scheduler, Path(out))
    return write_card(Path(out), "digits-cfg", summary)


def train_digits_flow(out: str | Path, *, steps: int, seed: int = 0, device: str = "cpu", batch_size: int = 256,
                      log_every: int = 100, command: str = "") -> dict:
    """Rectified-flow (velocity) model on 16x16 digits."""
    dev, gen = _setup(seed, device)
    data = load_digits_16().to(dev)
    unet = build_unet().to(dev)
    ema, stats = fit(unet, lambda m, idx: flow_loss(m, data[idx], gen), data.shape[0],
                     Fit(steps, batch_size, log_every=log_every), gen, name="digits-flow")
    summary = {**stats, "params": n_params(ema), "device": str(dev), "seed": seed, "command": command}
    save_unet_folder(ema, build_flow_scheduler(), Path(out))
    return write_card(Path(out), "digits-flow", summary)


@torch.no_grad()
def encode_posterior(vae, x: Tensor, batch: int = 512) -> tuple[Tensor, Tensor]:
    """(mean, std) of the VAE posterior for every image, in batches."""
    parts = [vae.encode(x[i:i + batch]).latent_dist for i in range(0, x.shape[0], batch)]
    return torch.cat([p.mean for p in parts]), torch.cat([p.std for p in parts])


def latent_scaling_factor(mean: Tensor, std: Tensor, gen: torch.Generator) -> float:
    """1 / std of posterior samples over the data set, so that the scaled latents have unit variance (LDM)."""
    z = mean + std * torch.randn(mean.shape, generator=gen, device=mean.device)
    return 1.0 / z.std().item()


def train_digits_latent(out: str | Path, *, steps: int, vae_steps: int, seed: int = 0, device: str = "cpu",
                        batch_size: int = 256, kl_weight: float = 1e-3, log_every: int = 100, command: str = "") -> dict:
    """A tiny AutoencoderKL on 32x32 digits, then an eps UNet on its scaled latents."""
    dev, gen = _setup(seed, device)
    data = load_digits(32)[0].to(dev)
    vae = build_vae().to(dev)
    vae_ema, vae_stats = fit(vae, lambda m, idx: vae_loss(m, data[idx], gen, kl_weight), data.shape[0],
                             Fit(vae_steps, batch_size, lr=1e-3, log_every=log_every), gen, name="digits-latent vae")
    mean, std = encode_posterior(vae_ema, data)
    scale = latent_scaling_factor(mean, std, gen)
    vae_ema.register_to_config(scaling_factor=scale)

    unet = build_latent_unet().to(dev)
    scheduler = build_scheduler()
    abar = scheduler.alphas_cumprod.to(dev, torch.float32)

    def loss_fn(m, idx):  # a fresh posterior sample of each latent every time, as LDM trains
        z = mean[idx] + std[idx] * torch.randn(mean[idx].shape, generator=gen, device=dev)
        return eps_loss(m, z * scale, abar, gen)

    ema, stats = fit(unet, loss_fn, data.shape[0], Fit(steps, batch_size, log_every=log_every), gen,
                     name="digits-latent unet")
    with torch.no_grad():  # how well the saved VAE reconstructs its training data (posterior mean)
        rec = torch.cat([vae_ema.decode(mean[i:i + 512]).sample for i in range(0, mean.shape[0], 512)])
        rec_mse = F.mse_loss(rec, data).item()
    summary = {**stats, "vae_steps": vae_stats["steps"], "vae_wall_s": vae_stats["wall_s"],
               "vae_final_loss": vae_stats["final_loss"], "vae_rec_mse": rec_mse, "kl_weight": kl_weight,
               "scaling_factor": scale, "unet_params": n_params(ema), "vae_params": n_params(vae_ema),
               "params": n_params(ema) + n_params(vae_ema), "device": str(dev), "seed": seed, "command": command}
    save_latent_folder(ema, vae_ema, scheduler, Path(out))
    return write_card(Path(out), "digits-latent", summary)


# Saving: diffusers folders and model cards.

def save_unet_folder(unet, scheduler, out: Path) -> None:
    """Flat diffusers folder: config.json, diffusion_pytorch_model.safetensors, scheduler_config.json."""
    out.mkdir(parents=True, exist_ok=True)
    unet.to("cpu").save_pretrained(out, safe_serialization=True)
    scheduler.save_config(out)


def save_latent_folder(unet, vae, scheduler, out: Path) -> None:
    """Pipeline folder: model_index.json, unet/, vae/ (safetensors), scheduler/scheduler_config.json."""
    import diffusers

    out.mkdir(parents=True, exist_ok=True)
    unet.to("cpu").save_pretrained(out / "unet", safe_serialization=True)
    vae.to("cpu").save_pretrained(out / "vae", safe_serialization=True)
    scheduler.save_config(out / "scheduler")
    index = {"_class_name": "LatentDiffusionPipeline", "_diffusers_version": diffusers.__version__,
             "unet": ["diffusers", "UNet2DModel"], "vae": ["diffusers", "AutoencoderKL"],
             "scheduler": ["diffusers", type(scheduler).__name__]}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


DESCRIPTIONS = {
    "ddpm-digits": ("Pixel-space DDPM: epsilon prediction, VP discrete noise schedule with 1000 training steps and\n"
                    "DDPM linear betas (1e-4 .. 0.02), diffusers `UNet2DModel` (1 x 16 x 16, unconditional)."),
    "digits-cfg": ("Class-conditional pixel-space DDPM with classifier-free guidance: epsilon prediction, VP\n"
                   "discrete noise schedule with 1000 training steps and DDPM linear betas (1e-4 .. 0.02),\n"
                   "diffusers `UNet2DModel` (1 x 16 x 16) with `num_class_embeds=11`: labels 0-9 are the digits,\n"
                   "10 is the null label; during training each label was replaced by 10 with probability 0.1.\n"
                   "Guided prediction: D_u + w (D_c - D_u) with D_u at label 10."),
    "digits-flow": ("Rectified flow / flow matching (the SD3 / Flux family): x_t = (1 - t) x0 + t eps, the network\n"
                    "predicts the velocity eps - x0 at model time 1000 t (t ~ U(0, 1) in training); diffusers\n"
                    "`UNet2DModel` (1 x 16 x 16, unconditional) with a `FlowMatchEulerDiscreteScheduler` config\n"
                    "(shift 1.0, 1000 training steps)."),
    "digits-latent": ("Latent diffusion: a tiny diffusers `AutoencoderKL` (1 x 32 x 32 -> 4 x 8 x 8) trained here, and\n"
                      "a `UNet2DModel` on its latents times `scaling_factor` (epsilon prediction, VP discrete, 1000\n"
                      "training steps, DDPM linear betas). Decode: `vae.decode(z / scaling_factor)`. Layout:\n"
                      "`model_index.json`, `unet/`, `vae/`, `scheduler/scheduler_config.json`."),
}


def write_card(out: Path, key: str, s: dict) -> dict:
    """Add the weights' sha256 to the summary ``s``, write ``MODEL_CARD.md`` and return ``s``."""
    from worker.loaders import weights_sha256

    s["sha256"] = weights_sha256(out)
    size = 32 if key == "digits-latent" else 16
    lines = [
        "- Data: `sklearn.datasets.load_digits` (1797 grey 8x8 images, values 0..16 scaled to [-1, 1]),",
        f"  bilinearly upsampled 8 -> {size} px; no flips (digits are not mirror-symmetric).",
        f"- Training command: `{s['command']}`",
        f"- Device: {s['device']}; seed {s['seed']}; AdamW lr {s['lr']:g} ({s['warmup']}-step warm-up, then constant), "
        f"batch {s['batch_size']}",
        f"- Steps{' (UNet)' if key == 'digits-latent' else ''}: {s['steps']}; wall time: {s['wall_s'] / 60:.1f} min",
        f"- Final loss (smoothed, training network): {s['final_loss']:.4f}",
        f"- Saved weights: EMA (decay {s['ema_decay']}) of the training network",
    ]
    if key == "digits-latent":
        lines += [
            f"- Autoencoder: {s['vae_steps']} steps (lr 1e-3, same batch), {s['vae_wall_s'] / 60:.1f} min; loss = MSE + "
            f"{s['kl_weight']:g} x KL (per element); final loss {s['vae_final_loss']:.4f}; reconstruction MSE of the "
            f"posterior mean {s['vae_rec_mse']:.4f}",
            f"- Total wall time (autoencoder + UNet): {(s['vae_wall_s'] + s['wall_s']) / 60:.1f} min",
            f"- Latent scaling_factor (1 / std of posterior samples over the data): {s['scaling_factor']:.5f}",
            f"- Parameters: {s['params']:,} (UNet {s['unet_params']:,}, VAE {s['vae_params']:,})",
        ]
    else:
        lines.append(f"- Parameters: {s['params']:,}")
    lines.append(f"- sha256 (`worker.loaders.weights_sha256`): `{s['sha256']}`")
    card = f"# {key}\n\n{DESCRIPTIONS[key]}\n\n" + "\n".join(lines) + f"\n\n## Quality at 50+ NFE\n\n{QUALITY_PLACEHOLDER}\n"
    (out / "MODEL_CARD.md").write_text(card)
    return s


# The catalog.

def catalog_entry(key: str, sha256: str) -> dict:
    """The ``models/catalog.json`` entry of a model trained by this script."""
    entry = {"key": key, "format": "diffusers", "location": key, "schedule": "from_scheduler_config",
             "prediction": "from_scheduler_config", "sample_shape": [1, 16, 16], "conditioning": "none"}
    if key == "digits-cfg":
        entry |= {"conditioning": "class", "num_classes": NUM_CLASSES, "null_class": NULL_CLASS}
    if key == "digits-latent":
        entry |= {"sample_shape": [4, 8, 8], "image_shape": [1, 32, 32]}
    first_line = DESCRIPTIONS[key].split(":")[0]
    return {**entry, "sha256": sha256, "guard_features": "digits-classifier",
            "description": f"{first_line} on sklearn digits; see {key}/MODEL_CARD.md"}


def update_catalog(path: Path, entries: list[dict]) -> None:
    """Replace the entries with the same keys (or append them), keeping every other entry and the order."""
    catalog = json.loads(path.read_text()) if path.is_file() else []
    new = {e["key"]: e for e in entries}
    merged = [new.pop(e["key"], e) for e in catalog] + list(new.values())
    path.write_text("[\n" + ",\n".join("  " + _json_entry(e) for e in merged) + "\n]\n")


def _json_entry(e: dict) -> str:
    # One field per line, short lists inline, like the hand-written ddpm-digits entry.
    body = ",\n".join(f"    {json.dumps(k)}: {json.dumps(v)}" for k, v in e.items())
    return "{\n" + body + "\n  }"


# Samples.

@dataclass
class Sampler:
    """What ``sample_grid`` needs of a model folder."""

    denoiser: Callable[[Tensor, Tensor], Tensor]
    schedule: object  # ld3core.schedules.NoiseSchedule
    shape: tuple[int, ...]
    decode: Callable[[Tensor], Tensor]
    labels: Tensor | None = None


def pixel_sampler(folder: Path, device: torch.device, *, n: int, guidance: float) -> Sampler:
    """A flat UNet2DModel folder through ``worker.loaders.load_model``; class-conditional ones
    get ``n`` rounded up to whole rows of one digit each, guided at ``guidance``."""
    from registry.catalog import ModelSpec
    from worker.loaders import load_model, weights_sha256

    cfg = json.loads((folder / "config.json").read_text())
    shape = (cfg["in_channels"], cfg["sample_size"], cfg["sample_size"])
    conditional = cfg.get("num_class_embeds") is not None
    spec = ModelSpec(key="sample", format="diffusers", location=folder.name, schedule="from_scheduler_config",
                     prediction="from_scheduler_config", sample_shape=shape, sha256=weights_sha256(folder),
                     **({"conditioning": "class", "num_classes": NUM_CLASSES, "null_class": NULL_CLASS} if conditional else {}))
    model = load_model(spec, folder.parent, device=device)
    if not conditional:
        return Sampler(model.denoiser, model.schedule, shape, lambda x: x)
    labels = torch.arange(NUM_CLASSES, device=device).repeat_interleave(math.ceil(n / NUM_CLASSES))
    guided = model.guided(labels, torch.full_like(labels, NULL_CLASS), guidance)
    return Sampler(guided, model.schedule, shape, lambda x: x, labels)


def latent_sampler(folder: Path, device: torch.device) -> Sampler:
    """A latent pipeline folder (``unet/``, ``vae/``, ``scheduler/``), loaded with diffusers directly."""
    from diffusers import AutoencoderKL, UNet2DModel

    from ld3core.denoisers import NetworkDenoiser
    from worker.loaders import scheduler_schedule

    kw = dict(local_files_only=True, low_cpu_mem_usage=False)  # False: no nag about the absent accelerate
    unet = UNet2DModel.from_pretrained(folder / "unet", **kw).to(device).eval()
    vae = AutoencoderKL.from_pretrained(folder / "vae", **kw).to(device).eval()
    schedule, prediction, model_time = scheduler_schedule(
        json.loads((folder / "scheduler" / "scheduler_config.json").read_text()))
    denoiser = NetworkDenoiser(lambda x, t: unet(x, t).sample, schedule, prediction, model_time)
    shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
    return Sampler(denoiser, schedule, shape, lambda z: vae.decode(z / vae.config.scaling_factor).sample)


def sample_grid(folder: str | Path, *, nfe: int = 50, n: int = 64, seed: int = 0, guidance: float = 2.0,
                device: str = "cpu", png: str | Path | None = None) -> Path:
    """Sample ``n`` images with ld3core's UniPC on the log-SNR steps; save an 8-wide grid.

    Class-conditional folders get one row per digit (8 each) at ``guidance``; latent pipeline
    folders are decoded with their VAE. Saved as ``<folder>/samples_unipc<nfe>.png`` by default.
    """
    from PIL import Image

    from ld3core.heuristics import logsnr
    from ld3core.solvers import get_solver

    folder, dev, cols = Path(folder).resolve(), torch.device(device), 8
    if (folder / "model_index.json").is_file():
        m = latent_sampler(folder, dev)
    else:
        m = pixel_sampler(folder, dev, n=cols * NUM_CLASSES, guidance=guidance)
    n = n if m.labels is None else m.labels.shape[0]
    x = torch.randn((n, *m.shape), generator=torch.Generator().manual_seed(seed)).to(dev) * m.schedule.sigma_T
    with torch.no_grad():
        imgs = m.decode(get_solver("unipc").fn(m.denoiser, x, logsnr(m.schedule, nfe).to(dev)))
    imgs = ((imgs.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0].cpu()
    h, w = imgs.shape[1:]
    rows = math.ceil(n / cols)
    grid = torch.zeros(rows * (h + 2), cols * (w + 2), dtype=torch.uint8)  # 2-px black gutters
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, c * (w + 2) + 1:c * (w + 2) + 1 + w] = im
    zoom = max(1, 64 // h)
    what = "unconditional" if m.labels is None else f"guidance {guidance:g}, one row per digit"
    out = Path(png) if png else folder / f"samples_unipc{nfe}.png"
    Image.fromarray(grid.numpy()).resize((grid.shape[1] * zoom, grid.shape[0] * zoom), Image.NEAREST).save(out)
    print(f"saved {n} samples (UniPC, NFE {nfe}, {what}) to {out}", flush=True)
    return out


# Command line.

# Defaults sized for both devices. One H200, `all --parallel`: ~37 steps/s per model (the tiny
# UNets are launch-bound, so the batch is nearly free), 1.5 min per pixel model, 2.1 min for the
# latent one. 2 CPU cores: ~0.7 s per pixel step at batch 256, so ~35 min per model.
DEFAULT_STEPS = {"digits-cfg": 3000, "digits-flow": 3000, "digits-latent": 3000}
DEFAULT_VAE_STEPS = 1000
DEFAULT_BATCH = 256


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def model_command(key: str, out: str | Path, *, steps: int, seed: int, device: str, batch_size: int,
                  vae_steps: int | None = None) -> list[str]:
    """The single-model command line that reproduces a training run (written into its card)."""
    args = [key, "--out", str(out), "--steps", str(steps), "--seed", str(seed), "--device", device,
            "--batch-size", str(batch_size)]
    return args + (["--vae-steps", str(vae_steps)] if key == "digits-latent" else [])


def train_one(key: str, out: str | Path, *, steps: int | None, seed: int, device: str, batch_size: int | None,
              log_every: int, vae_steps: int | None = None, minutes: float | None = None) -> dict:
    """Train model ``key`` into ``out`` with the given or default settings."""
    batch_size = batch_size or (128 if key == "ddpm-digits" else DEFAULT_BATCH)
    if key == "ddpm-digits":
        argv = ["ddpm-digits", "--out", str(out), "--seed", str(seed), "--device", device, "--batch-size", str(batch_size)]
        argv += (["--minutes", f"{minutes:g}"] if minutes is not None else []) + (["--steps", str(steps)] if steps else [])
        return train_ddpm_digits(out, minutes=minutes, steps=steps, seed=seed, device=device, batch_size=batch_size,
                                 log_every=log_every, command="python scripts/train_models.py " + shlex.join(argv))
    steps = steps or DEFAULT_STEPS[key]
    vae_steps = vae_steps or DEFAULT_VAE_STEPS
    cmd = "python scripts/train_models.py " + shlex.join(
        model_command(key, out, steps=steps, seed=seed, device=device, batch_size=batch_size, vae_steps=vae_steps))
    kw = dict(steps=steps, seed=seed, device=device, batch_size=batch_size, log_every=log_every, command=cmd)
    if key == "digits-cfg":
        return train_digits_cfg(out, **kw)
    if key == "digits-flow":
        return train_digits_flow(out, **kw)
    return train_digits_latent(out, vae_steps=vae_steps, **kw)


def _run_parallel(cmds: dict[str, list[str]], threads: int) -> None:
    """One subprocess per model, all at once; their lines (prefixed ``[key]``) share stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    procs = {k: subprocess.Popen(c, env=env) for k, c in cmds.items()}
    failed = [k for k, p in procs.items() if p.wait() != 0]
    if failed:
        raise SystemExit(f"training failed for {', '.join(failed)} (see the output above)")


def train_all(out_root: str | Path, *, device: str, seed: int = 0, steps: int | None = None,
              vae_steps: int | None = None, batch_size: int | None = None, log_every: int = 100,
              parallel: bool = False, threads: int = 2, samples: bool = True, sample_nfe: int = 50) -> list[dict]:
    """Train the three new models into ``out_root/<key>``, update ``out_root/catalog.json``, write sample grids."""
    from worker.loaders import weights_sha256

    root = Path(out_root)
    start = time.monotonic()
    if parallel:
        bs = batch_size or DEFAULT_BATCH
        cmds = {k: [sys.executable, str(Path(__file__).resolve()),
                    *model_command(k, root / k, steps=steps or DEFAULT_STEPS[k], seed=seed, device=device,
                                   batch_size=bs, vae_steps=vae_steps or DEFAULT_VAE_STEPS),
                    "--log-every", str(log_every), "--threads", str(threads)] for k in NEW_MODELS}
        _run_parallel(cmds, threads)
    else:
        for k in NEW_MODELS:
            train_one(k, root / k, steps=steps, seed=seed, device=device, batch_size=batch_size,
                      log_every=log_every, vae_steps=vae_steps)
    entries = [catalog_entry(k, weights_sha256(root / k)) for k in NEW_MODELS]
    update_catalog(root / "catalog.json", entries)
    print(f"trained {', '.join(NEW_MODELS)} in {time.monotonic() - start:.1f} s; updated {root / 'catalog.json'}",
          flush=True)
    if samples:
        for k in NEW_MODELS:
            sample_grid(root / k, nfe=sample_nfe, device=device)
    return entries


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)

    def common(q, out_flag="--out"):
        q.add_argument(out_flag, required=True)
        q.add_argument("--device", default=default_device(), choices=("cpu", "cuda"))
        q.add_argument("--steps", type=int, help="optimisation steps (default: the model's own)")
        q.add_argument("--seed", type=int, default=0)
        q.add_argument("--batch-size", type=int, help=f"default 128 for ddpm-digits, {DEFAULT_BATCH} otherwise")
        q.add_argument("--log-every", type=int, default=100)
        q.add_argument("--threads", type=int, default=2, help="CPU threads (the CI machines have 2 cores)")

    t = sub.add_parser("ddpm-digits", help="train the pixel-space DDPM on sklearn digits")
    common(t)
    t.add_argument("--minutes", type=float, help="stop after this wall time (or --steps, whichever first)")
    for key, what in (("digits-cfg", "class-conditional DDPM (classifier-free guidance)"),
                      ("digits-flow", "rectified-flow (velocity) model"), ("digits-latent", "VAE + latent DDPM")):
        m = sub.add_parser(key, help=f"train the {what} on sklearn digits")
        common(m)
        if key == "digits-latent":
            m.add_argument("--vae-steps", type=int, help=f"autoencoder steps (default {DEFAULT_VAE_STEPS})")
    a = sub.add_parser("all", help="train digits-cfg, digits-flow and digits-latent; update the catalog")
    common(a, "--out-root")
    a.add_argument("--vae-steps", type=int, help=f"autoencoder steps (default {DEFAULT_VAE_STEPS})")
    a.add_argument("--parallel", action="store_true", help="one subprocess per model (they share the device)")
    a.add_argument("--no-samples", action="store_true", help="skip the sample grids")
    s = sub.add_parser("samples", help="save a UniPC sample grid of a trained model folder")
    s.add_argument("folder")
    s.add_argument("--nfe", type=int, default=50)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--guidance", type=float, default=2.0, help="class-conditional models")
    s.add_argument("--device", default=default_device(), choices=("cpu", "cuda"))
    args = p.parse_args(argv)

    if args.what == "samples":
        sample_grid(args.folder, nfe=args.nfe, n=args.n, seed=args.seed, guidance=args.guidance, device=args.device)
        return
    torch.set_num_threads(args.threads)
    if args.what == "all":
        train_all(args.out_root, device=args.device, seed=args.seed, steps=args.steps, vae_steps=args.vae_steps,
                  batch_size=args.batch_size, log_every=args.log_every, parallel=args.parallel,
                  threads=args.threads, samples=not args.no_samples)
        return
    train_one(args.what, args.out, steps=args.steps, seed=args.seed, device=args.device, batch_size=args.batch_size,
              log_every=args.log_every, vae_steps=getattr(args, "vae_steps", None), minutes=getattr(args, "minutes", None))


if __name__ == "__main__":
    main()
