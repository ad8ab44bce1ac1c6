"""scripts/train_models.py makes loadable models, and the committed models/ catalog loads."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DModel
from PIL import Image

from ld3core.denoisers import NetworkDenoiser
from ld3core.schedules import RectifiedFlow, VPDiscrete
from registry.catalog import ModelSpec
from worker.loaders import load_model, scheduler_schedule, weights_sha256

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "models"


def _script():
    spec = importlib.util.spec_from_file_location("train_models", REPO / "scripts" / "train_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


tm = _script()


def _check_denoiser(model):
    x = torch.randn(2, *model.sample_shape)
    t = torch.full((2,), 0.5, dtype=torch.float64)
    with torch.no_grad():
        x0 = model.denoiser(x, t)
    assert x0.shape == x.shape
    assert torch.isfinite(x0).all()


def _spec(entry: dict) -> ModelSpec:
    # Fields a ModelSpec does not know yet (num_classes, image_shape) stay out of the loader's way.
    return ModelSpec(**{k: v for k, v in entry.items() if k in ModelSpec.__dataclass_fields__})


def test_training_a_few_steps_gives_a_loadable_diffusers_folder(tmp_path):
    out = tmp_path / "ddpm-digits"
    summary = tm.train_ddpm_digits(out, steps=3, batch_size=16, log_every=1, command="test")
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
    x = tm.load_digits_16()
    assert x.shape == (1797, 1, 16, 16)
    assert x.min() >= -1 and x.max() <= 1 and x.min() < -0.99 and x.max() > 0.9
    x32, y = tm.load_digits(32)
    assert x32.shape == (1797, 1, 32, 32) and y.shape == (1797,)
    assert sorted(y.unique().tolist()) == list(range(10))


def test_labels_are_dropped_to_the_null_label_one_time_in_ten():
    labels = torch.arange(100_000) % 10
    dropped = tm.drop_labels(labels, torch.Generator().manual_seed(0))
    kept = dropped != tm.NULL_CLASS
    assert abs((~kept).float().mean().item() - tm.P_UNCOND) < 0.005
    assert torch.equal(dropped[kept], labels[kept])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`all` on CPU with a few steps each, into a model root whose catalog has the other models only."""
    root = tmp_path_factory.mktemp("models")
    others = [e for e in json.loads((MODELS / "catalog.json").read_text()) if e["key"] not in tm.NEW_MODELS]
    (root / "catalog.json").write_text(json.dumps(others))
    entries = tm.train_all(root, device="cpu", steps=3, vae_steps=3, batch_size=8, log_every=1, sample_nfe=2)
    return root, {e["key"]: e for e in entries}


def test_all_adds_the_three_models_to_the_catalog_and_keeps_the_others(trained):
    root, entries = trained
    catalog = json.loads((root / "catalog.json").read_text())
    old = [e for e in json.loads((MODELS / "catalog.json").read_text()) if e["key"] not in tm.NEW_MODELS]
    assert [e["key"] for e in catalog] == [e["key"] for e in old] + list(tm.NEW_MODELS)
    assert catalog[:len(old)] == old
    for e in catalog[len(old):]:
        assert e == entries[e["key"]] and e["sha256"] == weights_sha256(root / e["key"])
        card = (root / e["key"] / "MODEL_CARD.md").read_text()
        assert e["sha256"] in card and tm.QUALITY_PLACEHOLDER in card
        assert f"python scripts/train_models.py {e['key']} --out {root / e['key']} --steps 3 --seed 0" in card
    assert entries["digits-cfg"] | {"num_classes": 10, "null_class": 10} == entries["digits-cfg"]
    assert entries["digits-latent"]["sample_shape"] == [4, 8, 8] and entries["digits-latent"]["image_shape"] == [1, 32, 32]


def test_update_catalog_replaces_entries_by_key(tmp_path):
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps([{"key": "a", "v": 1}, {"key": "b", "v": 1}]))
    tm.update_catalog(path, [{"key": "b", "v": 2}, {"key": "c", "v": 2}])
    assert json.loads(path.read_text()) == [{"key": "a", "v": 1}, {"key": "b", "v": 2}, {"key": "c", "v": 2}]


def test_cfg_folder_is_a_class_conditional_ddpm(trained):
    root, entries = trained
    folder = root / "digits-cfg"
    assert sorted(p.name for p in folder.iterdir()) == ["MODEL_CARD.md", "config.json", "diffusion_pytorch_model.safetensors",
                                                       "samples_unipc2.png", "scheduler_config.json"]
    assert isinstance(DDPMScheduler.from_pretrained(folder), DDPMScheduler)
    model = load_model(_spec(entries["digits-cfg"]), root)
    assert model.module.config.num_class_embeds == 11 and model.prediction == "eps"
    assert isinstance(model.schedule, VPDiscrete) and model.denoiser is None
    labels = torch.tensor([3, 7])
    with torch.no_grad():
        x0 = model.guided(labels, torch.full_like(labels, 10), 2.0)(torch.randn(2, 1, 16, 16), torch.tensor(0.5, dtype=torch.float64))
    assert x0.shape == (2, 1, 16, 16) and torch.isfinite(x0).all()
    # A grid of one row per digit: 10 rows of 8 samples, 16 px + 2 px gutter, zoomed 4x.
    assert Image.open(folder / "samples_unipc2.png").size == (8 * 18 * 4, 10 * 18 * 4)


def test_flow_folder_is_a_rectified_flow_model(trained):
    root, entries = trained
    folder = root / "digits-flow"
    sched = FlowMatchEulerDiscreteScheduler.from_pretrained(folder)
    assert sched.config.shift == 1.0 and sched.config.num_train_timesteps == 1000
    model = load_model(_spec(entries["digits-flow"]), root)
    assert isinstance(model.schedule, RectifiedFlow) and model.prediction == "flow"
    _check_denoiser(model)
    assert Image.open(folder / "samples_unipc2.png").size == (8 * 18 * 4, 8 * 18 * 4)


def test_latent_folder_is_a_pipeline_of_unet_vae_and_scheduler(trained):
    root, _ = trained
    folder = root / "digits-latent"
    index = json.loads((folder / "model_index.json").read_text())
    assert index["unet"] == ["diffusers", "UNet2DModel"] and index["vae"] == ["diffusers", "AutoencoderKL"]
    assert index["scheduler"] == ["diffusers", "DDPMScheduler"]
    for sub in ("unet", "vae"):
        assert (folder / sub / "diffusion_pytorch_model.safetensors").is_file()
    assert isinstance(DDPMScheduler.from_pretrained(folder / "scheduler"), DDPMScheduler)
    unet = UNet2DModel.from_pretrained(folder / "unet")
    vae = AutoencoderKL.from_pretrained(folder / "vae")
    assert (unet.config.in_channels, unet.config.sample_size) == (4, 8)
    with torch.no_grad():
        post = vae.encode(tm.load_digits(32)[0][:64]).latent_dist
        assert post.mean.shape == (64, 4, 8, 8)
        assert vae.decode(post.mean).sample.shape == (64, 1, 32, 32)
    card = (folder / "MODEL_CARD.md").read_text()
    assert f"{vae.config.scaling_factor:.5f}" in card
    assert Image.open(folder / "samples_unipc2.png").size == (8 * 34 * 2, 8 * 34 * 2)


def test_latent_scaling_factor_gives_unit_variance_latents(trained):
    vae = AutoencoderKL.from_pretrained(trained[0] / "digits-latent" / "vae")
    with torch.no_grad():
        mean, std = tm.encode_posterior(vae, tm.load_digits(32)[0])
    z = (mean + std * torch.randn(mean.shape, generator=torch.Generator().manual_seed(1))) * vae.config.scaling_factor
    assert abs(z.std().item() - 1.0) < 0.02


def _loaded_conventions(root: Path, key: str, entries: dict):
    """(schedule, prediction, model_time) as the loaders read them from the saved folder."""
    if key == "digits-latent":
        return scheduler_schedule(json.loads((root / key / "scheduler" / "scheduler_config.json").read_text()))
    model = load_model(_spec(entries[key]), root)
    return model.schedule, model.prediction, model.model_time


@pytest.mark.parametrize("key", tm.NEW_MODELS)
def test_a_network_that_fits_the_training_target_denoises_exactly_under_the_loaded_conventions(trained, key):
    # The script's noising, target and model time, read back through what the loader makes of
    # the saved scheduler config, must give the training image back: a model that learned the
    # objective perfectly is then a perfect denoiser for ld3core's solvers.
    root, entries = trained
    schedule, prediction, model_time = _loaded_conventions(root, key, entries)
    gen = torch.Generator().manual_seed(0)
    x0 = tm.load_digits_16()[:4] if key != "digits-latent" else torch.randn(4, 4, 8, 8, generator=gen)
    eps = torch.randn(x0.shape, generator=gen)
    if key == "digits-flow":
        t = torch.tensor([0.01, 0.3, 0.7, 0.99])
        xt, target, tm_train = tm.flow_noising(x0, eps, t)
    else:
        k = torch.tensor([0, 250, 600, 900])
        xt, target, tm_train = tm.vp_noising(x0, eps, k, DDPMScheduler.from_pretrained(
            root / key / ("scheduler" if key == "digits-latent" else "")).alphas_cumprod)
        t = (k + 1) / 1000  # VPDiscrete's time of training step k

    def perfect_net(x, model_t):
        assert torch.allclose(model_t, tm_train.float(), atol=1e-3), (model_t, tm_train)
        return target

    denoiser = NetworkDenoiser(perfect_net, schedule, prediction, model_time)
    assert torch.allclose(denoiser(xt, t.double()), x0, atol=2e-4)


def test_all_in_parallel_subprocesses_from_the_command_line(tmp_path):
    tm.main(["all", "--out-root", str(tmp_path), "--device", "cpu", "--steps", "2", "--vae-steps", "2",
             "--batch-size", "4", "--parallel", "--no-samples", "--threads", "1"])
    keys = [e["key"] for e in json.loads((tmp_path / "catalog.json").read_text())]
    assert keys == list(tm.NEW_MODELS)
    assert "Steps (UNet): 2;" in (tmp_path / "digits-latent" / "MODEL_CARD.md").read_text()


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
