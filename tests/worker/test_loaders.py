import json

import pytest
import torch
from diffusers import DDPMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DModel
from safetensors.torch import save_file

from ld3core.schedules import EDM, RectifiedFlow, VPDiscrete
from worker.architectures import TinyConvNet
from worker.catalog import ModelSpec
from worker.loaders import ModelLoadError, load_model, weights_sha256


def tiny_unet(**kw):
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 32), layers_per_block=1,
                       norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "UpBlock2D"), **kw)


def save_diffusers(root, name, scheduler, **kw):
    unet = tiny_unet(**kw)
    unet.save_pretrained(root / name)
    scheduler.save_config(root / name)
    return unet


def diffusers_spec(root, name, **kw):
    base = dict(key=name, format="diffusers", location=name, schedule="from_scheduler_config",
                prediction="from_scheduler_config", sample_shape=(1, 8, 8), sha256=weights_sha256(root / name))
    return ModelSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    save_diffusers(root, "ddpm", DDPMScheduler(num_train_timesteps=1000))
    save_diffusers(root, "ddpm-v", DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction"))
    save_diffusers(root, "flow", FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000))
    save_diffusers(root, "ddpm-class", DDPMScheduler(num_train_timesteps=1000), num_class_embeds=3)
    torch.manual_seed(1)
    save_file(TinyConvNet(1).state_dict(), root / "tiny.safetensors")
    torch.save(TinyConvNet(1).state_dict(), root / "tiny.pt")
    save_file(TinyConvNet(3).state_dict(), root / "tiny3.safetensors")
    return root


def test_diffusers_eps_round_trip(root):
    model = load_model(diffusers_spec(root, "ddpm"), root)
    sched = DDPMScheduler.from_pretrained(root / "ddpm")
    assert isinstance(model.schedule, VPDiscrete) and model.prediction == "eps"
    assert torch.equal(model.schedule.alphas_cumprod, VPDiscrete(sched.alphas_cumprod).alphas_cumprod)
    assert model.sample_shape == (1, 8, 8)
    assert all(not p.requires_grad for p in model.module.parameters()) and not model.module.training

    reference = UNet2DModel.from_pretrained(root / "ddpm").eval()
    x, k = torch.randn(2, 1, 8, 8), 499  # training step index k <-> t = (k + 1) / N
    t = torch.tensor((k + 1) / 1000, dtype=torch.float64)
    with torch.no_grad():
        eps = reference(x, torch.full((2,), float(k))).sample
        ac = sched.alphas_cumprod[k].double()
        x0 = (x - (1 - ac).sqrt().float() * eps) / ac.sqrt().float()
        torch.testing.assert_close(model.denoiser(x, t), x0, rtol=1e-4, atol=1e-4)


def test_diffusers_v_prediction_and_flow(root):
    assert load_model(diffusers_spec(root, "ddpm-v"), root).prediction == "v"
    flow = load_model(diffusers_spec(root, "flow"), root)
    assert isinstance(flow.schedule, RectifiedFlow) and flow.prediction == "flow"
    assert torch.allclose(flow.model_time(torch.tensor(0.25, dtype=torch.float64)), torch.tensor(250.0, dtype=torch.float64))


def test_diffusers_class_conditional_guided(root):
    model = load_model(diffusers_spec(root, "ddpm-class", conditioning="class"), root)
    assert model.denoiser is None
    labels = torch.tensor([0, 2])
    out = model.guided(labels, torch.tensor([1, 1]), 2.0)(torch.randn(2, 1, 8, 8), torch.tensor(0.5, dtype=torch.float64))
    assert out.shape == (2, 1, 8, 8)


def test_diffusers_catalog_prediction_must_agree(root):
    with pytest.raises(ModelLoadError, match="catalog prediction 'v' but the model predicts 'eps'"):
        load_model(diffusers_spec(root, "ddpm", prediction="v"), root)


def tiny_spec(root, name="tiny.safetensors", **kw):
    base = dict(key="tiny", format="safetensors", location=name, schedule=EDM().config(), prediction="x0",
                sample_shape=(1, 8, 8), architecture="tiny_conv", sha256=weights_sha256(root / name))
    return ModelSpec(**{**base, **kw})


def test_safetensors_round_trip(root):
    model = load_model(tiny_spec(root), root)
    torch.manual_seed(1)
    reference = TinyConvNet(1).eval()
    x, t = torch.randn(2, 1, 8, 8), torch.tensor(3.0, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model.denoiser(x, t), reference(x, torch.full((2,), 3.0)))
    assert isinstance(model.schedule, EDM)
    assert all(not p.requires_grad for p in model.module.parameters()) and not model.module.training


def test_analytic():
    spec = ModelSpec(key="gmm", format="analytic", location="gmm2d-edm", schedule="builtin", prediction="builtin", sample_shape=(2,))
    model = load_model(spec, "/nonexistent")
    assert isinstance(model.schedule, EDM) and model.sample_shape == (2,)
    assert model.denoiser(torch.zeros(4, 2, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)).shape == (4, 2)


def test_pickle_refused_by_default_and_weights_only_when_enabled(root):
    spec = tiny_spec(root, "tiny.pt", format="pickle")
    with pytest.raises(ModelLoadError, match="pickle.*refused.*allow_pickle"):
        load_model(spec, root)
    assert load_model(spec, root, allow_pickle=True).prediction == "x0"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, root / "evil.pt")
    evil = tiny_spec(root, "evil.pt", format="pickle")
    with pytest.raises(ModelLoadError, match="not a weights-only state dict"):
        load_model(evil, root, allow_pickle=True)


def test_path_escaping_root_refused(root, tmp_path):
    outside = tmp_path / "outside.safetensors"
    save_file(TinyConvNet(1).state_dict(), outside)
    (root / "link.safetensors").symlink_to(outside)
    spec = ModelSpec(**{**tiny_spec(root).to_dict(), "location": "link.safetensors", "sha256": weights_sha256(outside)})
    with pytest.raises(ModelLoadError, match="outside the model root"):
        load_model(spec, root)
    with pytest.raises(ValueError, match="'location'.*escapes"):
        ModelSpec(**{**tiny_spec(root).to_dict(), "location": "../outside.safetensors"})


def test_hash_mismatch_names_both(root):
    spec = tiny_spec(root, sha256="0" * 64)
    actual = weights_sha256(root / "tiny.safetensors")
    with pytest.raises(ModelLoadError, match=f"expected {'0' * 64}, actual {actual}"):
        load_model(spec, root)
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        load_model(diffusers_spec(root, "ddpm", sha256="1" * 64), root)


def test_missing_file_and_folder_named(root):
    spec = ModelSpec(**{**tiny_spec(root).to_dict(), "location": "nope.safetensors"})
    with pytest.raises(ModelLoadError, match=r"nope\.safetensors does not exist"):
        load_model(spec, root)
    (root / "half").mkdir()
    (root / "half" / "config.json").write_text(json.dumps({"_class_name": "UNet2DModel"}))
    (root / "half" / "x.safetensors").write_bytes(b"0")
    with pytest.raises(ModelLoadError, match=r"scheduler_config\.json is missing"):
        load_model(diffusers_spec(root, "half"), root)


def test_wrong_shape(root):
    with pytest.raises(ModelLoadError, match=r"(?s)do not fit architecture 'tiny_conv'.*size mismatch for inp.weight"):
        load_model(tiny_spec(root, "tiny3.safetensors"), root)
    with pytest.raises(ModelLoadError, match=r"catalog sample_shape \(3, 8, 8\) but the model has \(1, 8, 8\)"):
        load_model(diffusers_spec(root, "ddpm", sample_shape=(3, 8, 8)), root)


def test_unknown_format_and_architecture(root):
    spec = tiny_spec(root)
    object.__setattr__(spec, "format", "onnx")  # bypass the catalog check to exercise the loader's own
    with pytest.raises(ModelLoadError, match="unknown format 'onnx'"):
        load_model(spec, root)
    with pytest.raises(ModelLoadError, match="unknown architecture 'resnet9'"):
        load_model(tiny_spec(root, architecture="resnet9"), root)
    with pytest.raises(ValueError, match="'format'.*unknown format"):
        ModelSpec(**{**tiny_spec(root).to_dict(), "format": "onnx"})
