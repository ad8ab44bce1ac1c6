"""The preview of a finished job: a PNG of samples with the best heuristic's schedule above
and the learned one below, from the same noise and conditions."""

from __future__ import annotations

import io

import torch

from ld3core.config import JobConfig
from ld3core.heuristics import heuristic
from ld3core.optimize import JobResult

from .loaders import LoadedModel
from .sampling import generate

PREVIEW_SEEDS = range(2**41, 2**41 + 8)  # disjoint from every job's pair seeds and ld3 evaluate's


def has_images(loaded: LoadedModel) -> bool:
    """Whether the model's (decoded) samples are images: grey or RGB, (C, H, W)."""
    return len(loaded.image_shape) == 3 and loaded.image_shape[0] in (1, 3)


def preview_samples(loaded: LoadedModel) -> int:
    """Samples the preview draws (both rows); none for models whose samples are not images."""
    return 2 * len(PREVIEW_SEEDS) if has_images(loaded) else 0


def samples_png(loaded: LoadedModel, res: JobResult, cfg: JobConfig, *, guidance: float | None = None,
                prompts: list[str] | None = None, class_labels: list[int] | None = None,
                device: str = "cpu") -> bytes | None:
    """A PNG of two rows of samples from the same noise and conditions: the best heuristic's
    schedule above, the learned one below (latent models: decoded images); None for models
    whose samples are not images."""
    if not has_images(loaded):
        return None
    from PIL import Image

    seeds = list(PREVIEW_SEEDS)
    best = heuristic(res.best_heuristic, loaded.schedule, cfg.ld3.n_steps)
    rows = [generate(loaded, cfg.ld3.solver, t, tm, seeds, guidance=guidance, prompts=prompts, class_labels=class_labels,
                     device=device, final=cfg.ld3.final)
            for t, tm in ((best, None), (res.learned_t_steps, res.learned_t_model))]
    grid = torch.stack(rows)  # (2, n, C, H, W) in [-1, 1]
    r, n, c, h, w = grid.shape
    grid = grid.permute(0, 3, 1, 4, 2).reshape(r * h, n * w, c)
    pixels = ((grid + 1) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
    img = Image.fromarray(pixels[..., 0] if c == 1 else pixels)
    scale = max(1, 64 // max(h, w))
    img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()
