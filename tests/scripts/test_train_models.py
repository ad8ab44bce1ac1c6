"""scripts/train_models.py makes loadable models, and the committed models/ catalog loads."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from worker.catalog import ModelSpec
from worker.loaders import load_model, weights_sha256

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


def _script():
    spec = importlib.util.spec_from_file_location("train_models", REPO / "scripts" / "train_models.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_denoiser(model):
    x = torch.randn(2, *model.sample_shape)
    t = torch.full((2,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        x0 = model.denoiser(x, t)
    assert x0.shape == x.shape
    assert torch.isfinite(x0).all()


def test_training_a_few_steps_gives_a_loadable_diffusers_folder(tmp_path):
    out = tmp_path / "ddpm-digits"
    summary = _script().train_ddpm_digits(out, steps=3, batch_size=16, log_every=1, command="test")
    assert summary["steps"] == 3
    for name in ("config.json", "diffusion_pytorch_model.safetensors", "scheduler_config.json", "MODEL_CARD.md"):
        assert (out / name).is_file(), name
    sha = weights_sha256(out)
    assert summary["sha256"] == sha and sha in (out / "MODEL_CARD.md").read_text()
    spec = ModelSpec(key="ddpm-digits", format="diffusers", location="ddpm-digits", schedule="from_scheduler_config",
                     prediction="from_scheduler_config", sample_shape=(1, 16, 16), sha256=sha)
    model = load_model(spec, tmp_path)
    assert model.prediction == "eps"
    assert model.schedule.config()["name"] == "vp_discrete" and model.schedule.n_train == 1000
    _check_denoiser(model)


def test_digits_data_is_scaled_and_upsampled():
    x = _script().load_digits_16()
    assert x.shape == (1797, 1, 16, 16)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99 and x.max() > 0.9


def _catalog():
    return [ModelSpec.from_dict(d) for d in json.loads((MODELS / "catalog.json").read_text())]


def test_catalog_has_the_default_demo_model():
    assert "ddpm-digits" in {s.key for s in _catalog()}


@pytest.mark.parametrize("spec", _catalog() if (MODELS / "catalog.json").is_file() else [], ids=lambda s: s.key)
def test_committed_models_load_with_their_hashes(spec):
    model = load_model(spec, MODELS)  # checks the committed sha256 and the sample shape
    if model.denoiser is not None:
        _check_denoiser(model)


def test_committed_models_stay_small():
    total = sum(p.stat().st_size for p in MODELS.rglob("*") if p.is_file())
    assert total < 30 * 2**20, f"models/ holds {total / 2**20:.1f} MiB; issue 3 allows ~30 MB for all models"
