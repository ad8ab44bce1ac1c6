"""Train the small real diffusion models that ship in ``models/`` (issue 3, item 2).

    python scripts/train_models.py ddpm-digits --out models/ddpm-digits --minutes 20 [--steps S] [--seed 0] [--device cpu|cuda]
    python scripts/train_models.py samples models/ddpm-digits [--nfe 50] [--n 64]

``ddpm-digits``: a pixel-space DDPM (eps-prediction, 1000 discrete steps, DDPM linear betas)
on ``sklearn.datasets.load_digits`` (1797 8x8 images, upsampled to 16x16), saved as a
diffusers folder (safetensors weights + ``scheduler_config.json``) with a ``MODEL_CARD.md``.
``samples``: a PNG grid sampled with ld3core's UniPC, to look at what the model learned.
"""

from __future__ import annotations

import argparse
import copy
import math
import shlex
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

N_TRAIN_STEPS = 1000


def load_digits_16() -> torch.Tensor:
    """(1797, 1, 16, 16) float32 in [-1, 1]: sklearn digits (0..16), bilinearly upsampled 8 -> 16 px."""
    from sklearn.datasets import load_digits  # ships with scikit-learn: no download

    x = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    return F.interpolate(x, size=(16, 16), mode="bilinear", align_corners=False).clamp(-1, 1)


def build_unet():
    """~1M parameters: 16 -> 8 -> 4 px, self-attention only at 4x4 where it costs little."""
    from diffusers import UNet2DModel

    return UNet2DModel(
        sample_size=16,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"),
        norm_num_groups=8,  # 32 groups of one channel each would be instance norm at width 32
        attention_head_dim=32,
    )


def build_scheduler():
    from diffusers import DDPMScheduler

    return DDPMScheduler(num_train_timesteps=N_TRAIN_STEPS, beta_schedule="linear", prediction_type="epsilon")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, step: int, decay: float) -> float:
    # Warm-up (1+s)/(10+s): early EMA weights would otherwise stay near the random init for
    # ~1/(1-decay) steps, which matters for short runs.
    d = min(decay, (1 + step) / (10 + step))
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1 - d)
    return d


def lr_at(step: int, lr: float, warmup: int) -> float:
    # Constant after a linear warm-up: the run length is set by wall time, so a cosine
    # schedule would not know where it ends.
    return lr * min(1.0, (step + 1) / warmup)


def eps_loss(unet, x0: torch.Tensor, alphas_cumprod: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Standard DDPM loss: MSE of the predicted noise at uniformly drawn integer timesteps."""
    t = torch.randint(0, N_TRAIN_STEPS, (x0.shape[0],), generator=gen, device=x0.device)
    noise = torch.randn(x0.shape, generator=gen, device=x0.device)
    abar = alphas_cumprod[t].view(-1, 1, 1, 1)
    xt = abar.sqrt() * x0 + (1 - abar).sqrt() * noise
    return F.mse_loss(unet(xt, t).sample, noise)


def train_ddpm_digits(out: str | Path, *, minutes: float | None = None, steps: int | None = None, seed: int = 0,
                      device: str = "cpu", batch_size: int = 128, lr: float = 5e-4, warmup: int = 200,
                      ema_decay: float = 0.999, log_every: int = 100, command: str = "") -> dict:
    """Train until ``minutes`` or ``steps`` (whichever first), save the EMA model to ``out``."""
    if minutes is None and steps is None:
        raise ValueError("give --minutes or --steps (or both)")
    torch.manual_seed(seed)
    dev = torch.device(device)
    gen = torch.Generator(device=dev).manual_seed(seed)
    data = load_digits_16().to(dev)
    unet = build_unet().to(dev).train()
    ema = copy.deepcopy(unet).requires_grad_(False)
    scheduler = build_scheduler()
    alphas_cumprod = scheduler.alphas_cumprod.to(dev, torch.float32)
    opt = torch.optim.AdamW(unet.parameters(), lr=lr, weight_decay=0.0)

    start = time.monotonic()
    deadline = start + minutes * 60 if minutes is not None else math.inf
    step, ema_loss, t_log, s_log = 0, None, start, 0
    while (steps is None or step < steps) and time.monotonic() < deadline:
        idx = torch.randint(0, data.shape[0], (batch_size,), generator=gen, device=dev)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, lr, warmup)
        loss = eps_loss(unet, data[idx], alphas_cumprod, gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        ema_update(ema, unet, step, ema_decay)
        step += 1
        # A smoothed loss: one batch's loss at random timesteps is too noisy to read.
        ema_loss = loss.item() if ema_loss is None else 0.99 * ema_loss + 0.01 * loss.item()
        if step % log_every == 0:
            now = time.monotonic()
            print(f"step {step:6d}  loss {loss.item():.4f}  ema_loss {ema_loss:.4f}  "
                  f"{(step - s_log) / (now - t_log):.2f} steps/s  {(now - start) / 60:.1f} min", flush=True)
            t_log, s_log = now, step
    wall = time.monotonic() - start
    summary = {"steps": step, "wall_s": wall, "final_ema_loss": ema_loss,
               "params": sum(p.numel() for p in ema.parameters()), "device": str(dev), "seed": seed,
               "command": command}
    save_model(ema, scheduler, Path(out), summary)
    print(f"done: {step} steps in {wall / 60:.1f} min, final ema_loss {ema_loss:.4f}, saved to {out}", flush=True)
    return summary


def save_model(unet, scheduler, out: Path, summary: dict) -> None:
    from worker.loaders import weights_sha256

    out.mkdir(parents=True, exist_ok=True)
    unet.to("cpu").save_pretrained(out, safe_serialization=True)
    scheduler.save_config(out)
    summary["sha256"] = weights_sha256(out)
    (out / "MODEL_CARD.md").write_text(model_card(summary))


def model_card(s: dict) -> str:
    return f"""# ddpm-digits

Pixel-space DDPM: epsilon prediction, VP discrete noise schedule with 1000 training steps and
DDPM linear betas (1e-4 .. 0.02), diffusers `UNet2DModel` (1 x 16 x 16, unconditional).

- Data: `sklearn.datasets.load_digits` (1797 grey 8x8 images, values 0..16 scaled to [-1, 1]),
  bilinearly upsampled 8 -> 16 px; no flips (digits are not mirror-symmetric).
- Training command: `{s['command']}`
- Device: {s['device']}; seed {s['seed']}; AdamW lr 5e-4 (200-step warm-up, then constant), batch 128
- Steps: {s['steps']}; wall time: {s['wall_s'] / 60:.1f} min
- Final loss (smoothed, training network): {s['final_ema_loss']:.4f}
- Saved weights: EMA (decay 0.999) of the training network
- Parameters: {s['params']:,}
- sha256 (`worker.loaders.weights_sha256`): `{s['sha256']}`
- Quality at 50+ NFE: not yet measured (needs the Frechet-distance classifier of issue 3)
"""


def sample_grid(folder: str | Path, *, nfe: int = 50, n: int = 64, seed: int = 0, png: str | Path | None = None) -> Path:
    """Sample ``n`` images with ld3core's UniPC on the log-SNR schedule; save an 8-wide grid, x4."""
    from PIL import Image

    from ld3core.heuristics import logsnr
    from ld3core.solvers import get_solver
    from worker.catalog import ModelSpec
    from worker.loaders import load_model, weights_sha256

    folder = Path(folder).resolve()
    spec = ModelSpec(key="sample", format="diffusers", location=folder.name, schedule="from_scheduler_config",
                     prediction="from_scheduler_config", sample_shape=(1, 16, 16), sha256=weights_sha256(folder))
    model = load_model(spec, folder.parent)
    sch = model.schedule
    x = torch.randn((n, *model.sample_shape), generator=torch.Generator().manual_seed(seed)) * sch.sigma_T
    with torch.no_grad():
        x0 = get_solver("unipc").fn(model.denoiser, x, logsnr(sch, nfe))
    imgs = ((x0.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)[:, 0]
    cols = 8
    rows = math.ceil(n / cols)
    grid = torch.zeros(rows * 18, cols * 18, dtype=torch.uint8)  # 2-px black gutters
    for i, im in enumerate(imgs):
        r, c = divmod(i, cols)
        grid[r * 18 + 1:r * 18 + 17, c * 18 + 1:c * 18 + 17] = im
    out = Path(png) if png else folder / f"samples_unipc{nfe}.png"
    Image.fromarray(grid.numpy()).resize((grid.shape[1] * 4, grid.shape[0] * 4), Image.NEAREST).save(out)
    print(f"saved {n} samples (UniPC, NFE {nfe}) to {out}")
    return out


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    t = sub.add_parser("ddpm-digits", help="train the pixel-space DDPM on sklearn digits")
    t.add_argument("--out", required=True)
    t.add_argument("--minutes", type=float)
    t.add_argument("--steps", type=int)
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    t.add_argument("--threads", type=int, default=2, help="CPU threads (the CI machines have 2 cores)")
    t.add_argument("--log-every", type=int, default=100)
    s = sub.add_parser("samples", help="save a UniPC sample grid of a trained model folder")
    s.add_argument("folder")
    s.add_argument("--nfe", type=int, default=50)
    s.add_argument("--n", type=int, default=64)
    s.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.what == "samples":
        sample_grid(args.folder, nfe=args.nfe, n=args.n, seed=args.seed)
        return
    torch.set_num_threads(args.threads)
    command = "python scripts/train_models.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    train_ddpm_digits(args.out, minutes=args.minutes, steps=args.steps, seed=args.seed, device=args.device,
                      log_every=args.log_every, command=command)


if __name__ == "__main__":
    main()
