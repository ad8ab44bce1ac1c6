import hashlib
import json
import shutil

import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, FlowMatchEulerDiscreteScheduler, UNet2DConditionModel, UNet2DModel
from safetensors.torch import save_file

from ld3core.files import file_sha256
from ld3core.schedules import EDM, RectifiedFlow, VPDiscrete
from registry.catalog import ModelSpec
from worker.architectures import TinyConvNet
from worker.loaders import ModelLoadError, load_model, weights_sha256


def diffusers_spec(root, name, **kw):
    base = dict(key=name, format="diffusers", location=name, schedule="from_scheduler_config",
                prediction="from_scheduler_config", sample_shape=(1, 8, 8), sha256=weights_sha256(root / name))
    return ModelSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def root(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("models")
    save_diffusers = tiny_models.unet_folder
    save_diffusers(root, "ddpm", DDPMScheduler(num_train_timesteps=1000))
    save_diffusers(root, "ddpm-v", DDPMScheduler(num_train_timesteps=1000, prediction_type="v_prediction"))
    save_diffusers(root, "flow", FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000))
    save_diffusers(root, "ddpm-class", DDPMScheduler(num_train_timesteps=1000), num_class_embeds=3)
    torch.manual_seed(1)
    save_file(TinyConvNet(1).state_dict(), root / "tiny.safetensors")
    torch.save(TinyConvNet(1).state_dict(), root / "tiny.pt")
    save_file(TinyConvNet(3).state_dict(), root / "tiny3.safetensors")
    tiny_models.latent_pipeline(root / "latent")
    tiny_models.text_pipeline(root / "sd", root / "vocab")
    return root


def latent_spec(root, name="latent", **kw):
    return diffusers_spec(root, name, **{"sample_shape": (4, 4, 4), "image_shape": (1, 16, 16), **kw})


def text_spec(root, name="sd", **kw):
    return diffusers_spec(root, name, **{"sample_shape": (4, 4, 4), "image_shape": (3, 8, 8), "conditioning": "text", **kw})


def copy_without(root, name, new, *remove):
    shutil.copytree(root / name, root / new)
    for part in remove:
        shutil.rmtree(root / new / part)
    return new


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


def class_spec(root, name="ddpm-class", **kw):
    return diffusers_spec(root, name, **{"conditioning": "class", "num_classes": 2, "null_class": 2, **kw})


def test_diffusers_class_conditional_guidance_uses_labels_and_the_null_label(root):
    model = load_model(class_spec(root), root)
    assert model.denoiser is None and model.null_cond.item() == 2 and model.null_cond.dtype == torch.long
    reference = UNet2DModel.from_pretrained(root / "ddpm-class").eval()
    ac = DDPMScheduler.from_pretrained(root / "ddpm-class").alphas_cumprod[499].double()
    x, labels, t = torch.randn(2, 1, 8, 8), torch.tensor([0, 1]), torch.tensor(0.5, dtype=torch.float64)

    def x0(lab):
        eps = reference(x, torch.full((2,), 499.0), class_labels=lab).sample
        return (x - (1 - ac).sqrt().float() * eps) / ac.sqrt().float()

    with torch.no_grad():
        x0_c, x0_u = x0(labels), x0(torch.tensor([2, 2]))
        torch.testing.assert_close(model.conditional(3.0).bind(labels)(x, t), x0_u + 3.0 * (x0_c - x0_u), rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.conditional(1.0).bind(labels)(x, t), x0_c, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(model.guided(labels, torch.tensor([2, 2]), 3.0)(x, t), model.conditional(3.0).bind(labels)(x, t))
    assert float((x0_c - x0_u).abs().max()) > 1e-4  # the label matters, so a dropped label would be caught


def test_class_conditioning_must_fit_the_unet(root):
    with pytest.raises(ModelLoadError, match="no class embedding"):
        load_model(class_spec(root, "ddpm"), root)
    with pytest.raises(ModelLoadError, match=r"null_class 5 need labels up to 5, but the UNet embeds 3 labels"):
        load_model(class_spec(root, null_class=5), root)
    with pytest.raises(ModelLoadError, match="has a class embedding but the catalog conditioning is 'none'"):
        load_model(diffusers_spec(root, "ddpm-class"), root)
    with pytest.raises(ValueError, match="'num_classes'.*required"):
        diffusers_spec(root, "ddpm-class", conditioning="class")
    with pytest.raises(ValueError, match="'conditioning'.*registered architectures are unconditional"):
        tiny_spec(root, conditioning="class", num_classes=2, null_class=2)
    conditional = tiny_spec(root)
    object.__setattr__(conditional, "conditioning", "class")  # bypass the catalog check to exercise the loader's own
    with pytest.raises(ModelLoadError, match="registered architectures are unconditional"):
        load_model(conditional, root)


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


def test_a_symlink_inside_a_model_folder_that_leaves_the_root_is_refused(root, tmp_path):
    """Only the folder itself was resolved: a weights file (or a subfolder) linked from inside it to
    elsewhere was hashed and loaded from there. Every file the loader may read must stay in the root."""
    models, outside = tmp_path / "models", tmp_path / "outside"
    outside.mkdir()
    shutil.copytree(root / "ddpm", models / "ddpm")
    weights = models / "ddpm" / "diffusion_pytorch_model.safetensors"
    shutil.move(weights, outside / weights.name)
    weights.symlink_to(outside / weights.name)
    spec = diffusers_spec(models, "ddpm")  # the same content: the hash alone would let it through
    with pytest.raises(ModelLoadError, match=r"diffusion_pytorch_model\.safetensors.*outside the model root"):
        load_model(spec, models)

    shutil.copytree(root / "latent", models / "latent")
    shutil.move(models / "latent" / "vae", outside / "vae")
    (models / "latent" / "vae").symlink_to(outside / "vae", target_is_directory=True)
    with pytest.raises(ModelLoadError, match=r"vae.*outside the model root"):
        load_model(latent_spec(models), models)


def test_a_symlink_that_stays_in_the_root_is_followed(root, tmp_path):
    models = tmp_path / "models"
    shutil.copytree(root / "ddpm", models / "shared")
    (models / "ddpm").mkdir()
    for f in (models / "shared").iterdir():
        (models / "ddpm" / f.name).symlink_to(f)
    (models / "ddpm" / "loop").symlink_to(models / "ddpm", target_is_directory=True)  # a cycle is walked once
    assert load_model(diffusers_spec(models, "ddpm"), models).prediction == "eps"


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
    with pytest.raises(ValueError, match="'architecture'.*unknown architecture 'resnet9'"):
        tiny_spec(root, architecture="resnet9")
    spec = tiny_spec(root)
    object.__setattr__(spec, "architecture", "resnet9")
    with pytest.raises(ModelLoadError, match="unknown architecture 'resnet9'"):
        load_model(spec, root)
    with pytest.raises(ValueError, match="'format'.*unknown format"):
        ModelSpec(**{**tiny_spec(root).to_dict(), "format": "onnx"})


# Latent pipelines.

def test_latent_pipeline_round_trip_decodes_with_the_vae(root):
    model = load_model(latent_spec(root), root)
    assert model.latent and model.sample_shape == (4, 4, 4) and model.image_shape == (1, 16, 16)
    assert all(not p.requires_grad for p in model.vae.parameters()) and not model.vae.training
    vae = AutoencoderKL.from_pretrained(root / "latent" / "vae").eval()
    z = torch.randn(3, 4, 4, 4)
    with torch.no_grad():
        images = model.decode(z)
        torch.testing.assert_close(images, vae.decode(z / 0.5).sample)
    assert images.shape == (3, 1, 16, 16)
    # The UNet denoises latents, as a flat folder's would.
    unet = UNet2DModel.from_pretrained(root / "latent" / "unet").eval()
    ac = DDPMScheduler.from_pretrained(root / "latent" / "scheduler").alphas_cumprod[249].double()
    with torch.no_grad():
        eps = unet(z, torch.full((3,), 249.0)).sample
        expected = (z - (1 - ac).sqrt().float() * eps) / ac.sqrt().float()
        torch.testing.assert_close(model.denoiser(z, torch.tensor(0.25, dtype=torch.float64)), expected, rtol=1e-4, atol=1e-4)


def test_pixel_models_have_nothing_to_decode(root):
    model = load_model(diffusers_spec(root, "ddpm"), root)
    assert not model.latent and model.image_shape == model.sample_shape
    with pytest.raises(ModelLoadError, match="pixel-space model"):
        model.decode(torch.zeros(1, 1, 8, 8))


def test_pipeline_hash_covers_every_weight_file_by_relative_path(root):
    folder = root / "latent"
    files = ["unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"]
    lines = "".join(f"{f} {file_sha256(folder / f)}\n" for f in sorted(files))
    assert weights_sha256(folder) == hashlib.sha256(lines.encode()).hexdigest()
    # The same files under swapped names are another model.
    swapped = root / "latent-swapped"
    shutil.copytree(folder, swapped)
    (swapped / files[0]).rename(swapped / "tmp.safetensors")
    (swapped / files[1]).rename(swapped / files[0])
    (swapped / "tmp.safetensors").rename(swapped / files[1])
    assert weights_sha256(swapped) != weights_sha256(folder)
    with pytest.raises(ModelLoadError, match="sha256 mismatch"):
        load_model(ModelSpec(**{**latent_spec(root).to_dict(), "location": "latent-swapped"}), root)


def test_latent_refusals_name_what_is_wrong(root):
    no_vae = copy_without(root, "latent", "latent-no-vae", "vae")
    with pytest.raises(ModelLoadError, match=r"latent-no-vae/vae is missing \(a latent model decodes with its AutoencoderKL\)"):
        load_model(latent_spec(root, no_vae), root)
    with pytest.raises(ModelLoadError, match="image_shape is required for a latent model"):
        load_model(latent_spec(root, image_shape=None), root)
    with pytest.raises(ModelLoadError, match=r"catalog image_shape \(1, 8, 8\) but the model has \(1, 16, 16\)"):
        load_model(latent_spec(root, image_shape=(1, 8, 8)), root)
    with pytest.raises(ModelLoadError, match=r"catalog sample_shape \(4, 8, 8\) but the model has \(4, 4, 4\)"):
        load_model(latent_spec(root, sample_shape=(4, 8, 8)), root)
    with pytest.raises(ModelLoadError, match="flat UNet folder with no VAE"):
        load_model(diffusers_spec(root, "ddpm", image_shape=(1, 16, 16)), root)
    odd = copy_without(root, "latent", "latent-vq")
    index = json.loads((root / odd / "model_index.json").read_text())
    (root / odd / "model_index.json").write_text(json.dumps({**index, "vae": ["diffusers", "VQModel"]}))
    with pytest.raises(ModelLoadError, match=r"names 'VQModel' for vae; supported: \['AutoencoderKL'\]"):
        load_model(latent_spec(root, odd), root)
    no_sched = copy_without(root, "latent", "latent-no-scheduler", "scheduler")
    with pytest.raises(ModelLoadError, match=r"scheduler is missing \(the noise schedule\)"):
        load_model(latent_spec(root, no_sched), root)


# Text-conditional (Stable-Diffusion-style) pipelines.

def test_text_pipeline_encodes_prompts_and_guides_against_the_empty_prompt(root):
    from transformers import CLIPTextModel, CLIPTokenizer

    model = load_model(text_spec(root), root)
    assert model.conditioning == "text" and model.denoiser is None and model.latent and model.image_shape == (3, 8, 8)
    assert all(not p.requires_grad for p in model.prompt_encoder.text_encoder.parameters())
    tokenizer = CLIPTokenizer.from_pretrained(root / "sd" / "tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(root / "sd" / "text_encoder").eval()
    unet = UNet2DConditionModel.from_pretrained(root / "sd" / "unet").eval()
    ac = DDPMScheduler.from_pretrained(root / "sd" / "scheduler").alphas_cumprod[499].double()

    def embed(prompts):
        ids = tokenizer(prompts, padding="max_length", max_length=8, truncation=True, return_tensors="pt").input_ids
        return text_encoder(ids).last_hidden_state

    prompts = ["a red cat", "dog"]
    x, t = torch.randn(2, 4, 4, 4), torch.tensor(0.5, dtype=torch.float64)
    with torch.no_grad():
        emb, null = embed(prompts), embed([""])[0]
        torch.testing.assert_close(model.encode_prompts(prompts), emb)
        assert emb.shape == (2, 8, 16) and not torch.allclose(emb[0], emb[1])
        torch.testing.assert_close(model.null_cond, null)

        def x0(cond):
            eps = unet(x, torch.full((2,), 499.0), encoder_hidden_states=cond).sample
            return (x - (1 - ac).sqrt().float() * eps) / ac.sqrt().float()

        x0_c, x0_u = x0(emb), x0(null.expand(2, 8, 16))
        out = model.conditional(4.0).bind(model.encode_prompts(prompts))(x, t)
        torch.testing.assert_close(out, x0_u + 4.0 * (x0_c - x0_u), rtol=1e-4, atol=1e-4)
        assert model.decode(out).shape == (2, 3, 8, 8)
    assert float((x0_c - x0_u).abs().max()) > 1e-5  # the prompt matters


def test_text_pipeline_refusals_name_what_is_wrong(root):
    no_tok = copy_without(root, "sd", "sd-no-tokenizer", "tokenizer")
    with pytest.raises(ModelLoadError, match=r"sd-no-tokenizer/tokenizer is missing \(a text-conditional pipeline tokenizes"):
        load_model(text_spec(root, no_tok), root)
    no_te = copy_without(root, "sd", "sd-no-text-encoder", "text_encoder")
    with pytest.raises(ModelLoadError, match=r"text_encoder is missing"):
        load_model(text_spec(root, no_te), root)
    with pytest.raises(ModelLoadError, match="UNet2DConditionModel takes text embeddings; the catalog conditioning must be 'text'"):
        load_model(text_spec(root, conditioning="none"), root)
    with pytest.raises(ModelLoadError, match="UNet2DModel takes no text prompts"):
        load_model(latent_spec(root, conditioning="text"), root)
    (root / "flat-sd").mkdir()
    shutil.copytree(root / "sd" / "unet", root / "flat-sd", dirs_exist_ok=True)
    DDPMScheduler().save_config(root / "flat-sd")
    with pytest.raises(ModelLoadError, match="UNet2DConditionModel needs its text encoder; give a pipeline folder"):
        load_model(text_spec(root, "flat-sd"), root)
    with pytest.raises(ModelLoadError, match="takes no text prompts"):
        load_model(diffusers_spec(root, "ddpm"), root).encode_prompts(["a cat"])


def test_pixel_pipeline_without_vae_loads_as_a_pixel_model(root):
    out = root / "ddpm-pipeline"
    shutil.copytree(root / "ddpm", out / "unet")
    (out / "unet" / "scheduler_config.json").rename(root / "moved_scheduler_config.json")
    (out / "scheduler").mkdir()
    (root / "moved_scheduler_config.json").rename(out / "scheduler" / "scheduler_config.json")
    (out / "model_index.json").write_text(json.dumps({"_class_name": "DDPMPipeline", "unet": ["diffusers", "UNet2DModel"],
                                                      "scheduler": ["diffusers", "DDPMScheduler"]}))
    model = load_model(diffusers_spec(root, "ddpm-pipeline"), root)
    flat = load_model(diffusers_spec(root, "ddpm"), root)
    assert not model.latent and model.image_shape == (1, 8, 8)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor(0.3, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(model.denoiser(x, t), flat.denoiser(x, t), rtol=0, atol=0)
    with pytest.raises(ModelLoadError, match="image_shape is for"):
        load_model(diffusers_spec(root, "ddpm", image_shape=(1, 8, 8)), root)
    with pytest.raises(ModelLoadError, match=r"ddpm-pipeline/vae is missing \(a latent model decodes"):
        load_model(diffusers_spec(root, "ddpm-pipeline", image_shape=(1, 8, 8)), root)
