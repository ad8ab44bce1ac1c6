"""worker.preview: the sample grid of a finished job (the best heuristic above, LD3 below, the same seeds).

Jobs run end to end through ``worker.runner.execute`` (SQLite) on the shipped ``ddpm-digits`` and a
tiny latent pipeline; the grid is checked pixel by pixel against ``worker.sampling.generate``.
"""

from __future__ import annotations

import io
import json

import torch
from PIL import Image
from worker_support import ROOT, image_job, tiny_spec

from ld3core.heuristics import heuristic
from registry import jobs as q
from registry import schedules as sq
from registry.catalog import ModelSpec
from registry.db import session_scope
from worker.loaders import load_model
from worker.preview import PREVIEW_SEEDS, has_images, preview_samples
from worker.runner import execute
from worker.sampling import generate


def test_only_image_models_get_a_preview():
    analytic = load_model(ModelSpec.from_dict({"key": "gmm2d", "format": "analytic", "location": "gmm2d-edm",
                                               "schedule": "builtin", "prediction": "builtin", "sample_shape": [2]}),
                          ROOT / "models")
    assert not has_images(analytic) and preview_samples(analytic) == 0
    spec = next(m for m in json.loads((ROOT / "models" / "catalog.json").read_text()) if m["key"] == "ddpm-digits")
    digits = load_model(ModelSpec.from_dict(spec), ROOT / "models")
    assert has_images(digits) and preview_samples(digits) == 2 * len(PREVIEW_SEEDS)


def _grid(png: bytes) -> tuple[Image.Image, torch.Tensor]:
    img = Image.open(io.BytesIO(png))
    return img, torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(img.height, img.width, -1)


def _rows_as_pixels(images: torch.Tensor, scale: int) -> torch.Tensor:
    """One grid row as the PNG holds it: (n, C, H, W) in [-1, 1] -> (H * scale, n * W * scale, C) bytes."""
    n, c, h, w = images.shape
    row = images.permute(2, 0, 3, 1).reshape(h, n * w, c)
    row = ((row + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
    return row.repeat_interleave(scale, 0).repeat_interleave(scale, 1)


def test_a_ddpm_digits_job_stores_a_grid_of_heuristic_and_learned_samples_from_the_same_seeds(sqlite_url):
    spec = next(m for m in json.loads((ROOT / "models" / "catalog.json").read_text()) if m["key"] == "ddpm-digits")
    # Enough pairs and validations that LD3 moves away from its start (about 5 s).
    options = {"teacher_nfe": 20, "n_train": 16, "n_val": 8, "val_every": 2}
    factory_, settings, job_id = image_job(sqlite_url, ROOT / "models", spec, options)
    assert execute(job_id, session_factory=factory_, settings=settings, worker_name="w1") == "succeeded"
    with session_scope(factory_) as s:
        row = q.get_job(s, job_id)
        result, png = row.result, sq.get_active(s, "ddpm-digits", "euler", 3).samples_png
    img, pixels = _grid(png)
    n, scale = len(PREVIEW_SEEDS), 64 // 16
    assert img.format == "PNG" and img.mode == "L" and img.size == (n * 16 * scale, 2 * 16 * scale)
    top, bottom = pixels[: img.height // 2], pixels[img.height // 2 :]
    assert not torch.equal(top, bottom)
    # Each row is its schedule's samples of the preview seeds: the best heuristic above, LD3 below.
    loaded = load_model(ModelSpec.from_dict(spec), ROOT / "models")
    best = heuristic(result["best_heuristic"], loaded.schedule, 3)
    learned = (torch.tensor(result["learned_t_steps"], dtype=torch.float64),
               torch.tensor(result["learned_t_model"], dtype=torch.float64))
    for half, (t, tm) in ((top, (best, None)), (bottom, learned)):
        assert torch.equal(half, _rows_as_pixels(generate(loaded, "euler", t, tm, list(PREVIEW_SEEDS)), scale))


def test_a_latent_models_grid_holds_decoded_images_not_latents(sqlite_url, tmp_path, tiny_models):
    tiny_models.latent_pipeline(tmp_path / "latent")
    spec = tiny_spec(tmp_path, "latent", sample_shape=[4, 4, 4], image_shape=[1, 16, 16])
    factory_, settings, job_id = image_job(sqlite_url, tmp_path, spec, {})
    assert execute(job_id, session_factory=factory_, settings=settings, worker_name="w1") == "succeeded"
    with session_scope(factory_) as s:
        png = sq.get_active(s, "latent", "euler", 3).samples_png
    img, _ = _grid(png)
    assert img.mode == "L" and img.size == (len(PREVIEW_SEEDS) * 16 * 4, 2 * 16 * 4)  # 16 px images, not 4 px latents
