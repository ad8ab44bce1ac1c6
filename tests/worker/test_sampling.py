import math

import pytest
import torch
from diffusers import DDPMScheduler

from ld3core.config import JobConfig, LD3Config, TeacherSpec
from ld3core.denoisers import GuidedNetwork
from ld3core.heuristics import heuristic
from ld3core.losses import l2
from ld3core.optimize import job_pairs, run_job
from ld3core.solvers import get_solver
from ld3core.teacher import prior_noise
from ld3core.train import radius
from registry.catalog import ModelSpec
from worker.loaders import load_model, weights_sha256
from worker.sampling import conditions_for, generate, prepare_job, run_model_job

PROMPTS = ["a red cat", "dog", "cat"]


def spec(root, name, **kw):
    base = dict(key=name, format="diffusers", location=name, schedule="from_scheduler_config",
                prediction="from_scheduler_config", sample_shape=(1, 8, 8), sha256=weights_sha256(root / name))
    return ModelSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_models):
    root = tmp_path_factory.mktemp("models")
    tiny_models.unet_folder(root, "ddpm", DDPMScheduler(num_train_timesteps=1000))
    tiny_models.unet_folder(root, "cfg", DDPMScheduler(num_train_timesteps=1000), num_class_embeds=4)
    tiny_models.latent_pipeline(root / "latent")
    tiny_models.text_pipeline(root / "sd", root / "vocab")
    return {
        "ddpm": load_model(spec(root, "ddpm"), root),
        "cfg": load_model(spec(root, "cfg", conditioning="class", num_classes=3, null_class=3), root),
        "latent": load_model(spec(root, "latent", sample_shape=(4, 4, 4), image_shape=(1, 16, 16)), root),
        "sd": load_model(spec(root, "sd", sample_shape=(4, 4, 4), image_shape=(3, 8, 8), conditioning="text"), root),
    }


LD3_OPTIONS = dict(solver="euler", nfe=3, loss="l2", phase1_epochs=1, phase2_epochs=1, val_every=1)


def small_job(ld3=None):
    return JobConfig(ld3=ld3 or LD3Config(**LD3_OPTIONS), teacher=TeacherSpec("euler", 8, "time_uniform"),
                     n_train=4, n_val=2, n_test=3, starts=1, batch_size=8)


def test_unconditional_pixel_model_inputs(models):
    m = models["ddpm"]
    inputs = prepare_job(m, loss="l2")
    assert inputs.denoiser is m.denoiser and inputs.conditions is None and inputs.sample_shape == (1, 8, 8)
    assert not inputs.latent and inputs.ld3_config(nfe=4) == LD3Config(nfe=4)
    a, b = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(inputs.loss_fn(a, b), l2(a, b))
    with pytest.raises(ValueError, match="guidance: model 'ddpm' is unconditional"):
        prepare_job(m, guidance=2.0)
    with pytest.raises(ValueError, match="prompts: model 'ddpm' takes no text prompts"):
        prepare_job(m, prompts=["a cat"])


def test_lpips_loss_takes_small_one_channel_images(models):
    loss_fn = prepare_job(models["ddpm"], loss="lpips").loss_fn
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1, torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    d = loss_fn(a, b)
    assert d.shape == (3,) and bool((d > 0).all()) and float(loss_fn(a, a).abs().max()) < 1e-6


def test_class_conditions_are_a_pure_function_of_the_seed(models):
    m = models["cfg"]
    cond = conditions_for(m)
    assert cond([0, 1, 2, 3, 4, 10]).tolist() == [0, 1, 2, 0, 1, 1]
    assert torch.equal(cond([4]), cond([2, 3, 4])[2:])
    inputs = prepare_job(m, loss="l2", guidance=2.5)
    assert isinstance(inputs.denoiser, GuidedNetwork) and inputs.denoiser.scale == 2.5
    assert inputs.denoiser.uncond.item() == 3  # the catalog's null label
    assert prepare_job(m, loss="l2").denoiser.scale == 1.0
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="guidance: must be a finite number >= 0"):
            prepare_job(m, guidance=bad)
    # A job's own label list cycles the same way.
    assert conditions_for(m, class_labels=[2, 0])([0, 1, 2, 3, 4]).tolist() == [2, 0, 2, 0, 2]
    assert prepare_job(m, loss="l2", class_labels=[1]).conditions([5, 6]).tolist() == [1, 1]
    for bad in ([], [3], [-1], [True]):
        with pytest.raises(ValueError, match=r"class_labels: need a non-empty list of labels in 0\.\.2"):
            prepare_job(m, class_labels=bad)
    with pytest.raises(ValueError, match="class_labels: model 'ddpm' is not class-conditional"):
        prepare_job(models["ddpm"], class_labels=[0])


def test_class_job_trains_on_per_sample_labels_and_resumes_bit_for_bit(models):
    m, cfg = models["cfg"], small_job()
    inputs = prepare_job(m, loss="l2", guidance=2.0)
    pairs = job_pairs(inputs.denoiser, inputs.sample_shape, cfg, conditions=inputs.conditions)
    assert pairs["train"].cond.tolist() == [0, 1, 2, 0]  # seeds 0..3: the labels differ within a batch
    assert pairs["test"].cond.tolist() == [0, 1, 2]  # seeds 6..8
    # The teacher's outputs are the model's samples for those seeds and labels.
    t = heuristic("time_uniform", m.schedule, 8)
    images = generate(m, "euler", t, None, cfg.seeds()["train"], guidance=2.0, batch_size=3)
    torch.testing.assert_close(images, pairs["train"].x_0.clamp(-1, 1), rtol=0, atol=1e-4)
    assert not torch.allclose(pairs["train"].x_0[0], pairs["train"].x_0[3])

    states = []
    full = run_model_job(m, cfg, guidance=2.0, on_checkpoint=states.append)
    assert full.train.iterations == 4 and torch.isfinite(full.learned_t_steps).all()
    mid = next(s for s in states if s["iteration"] == 2)
    resumed = run_model_job(m, cfg, guidance=2.0, resume=mid)
    assert torch.equal(resumed.learned_t_steps, full.learned_t_steps)
    assert torch.equal(resumed.learned_t_model, full.learned_t_model)
    assert resumed.train.history == full.train.history and resumed.test == full.test
    # Same job through run_job with the precomputed (conditioned) pairs: the same result.
    again = run_job(inputs.denoiser, inputs.sample_shape, cfg, inputs.loss_fn, pairs=pairs)
    assert torch.equal(again.learned_t_steps, full.learned_t_steps)


def test_generate_depends_only_on_seed_and_condition(models):
    m = models["cfg"]
    t = heuristic("logsnr", m.schedule, 4)
    seeds = [5, 6, 7, 8, 9]
    one = generate(m, "dpmpp_2m", t, None, seeds, guidance=2.0, batch_size=1)
    many = generate(m, "dpmpp_2m", t, None, seeds, guidance=2.0, batch_size=3)
    alone = generate(m, "dpmpp_2m", t, None, seeds[3:4], guidance=2.0)
    assert one.shape == (5, 1, 8, 8) and float(one.abs().max()) <= 1
    torch.testing.assert_close(many, one, rtol=0, atol=1e-4)
    torch.testing.assert_close(alone, one[3:4], rtol=0, atol=1e-4)
    # Explicit labels replace the seed's own; another label is another image.
    own = generate(m, "dpmpp_2m", t, None, seeds, guidance=2.0, labels=[s % 3 for s in seeds])
    torch.testing.assert_close(own, one, rtol=0, atol=1e-4)
    other = generate(m, "dpmpp_2m", t, None, seeds, guidance=2.0, labels=[(s + 1) % 3 for s in seeds])
    assert (other - one).flatten(1).abs().max(1).values.min() > 1e-4
    via_list = generate(m, "dpmpp_2m", t, None, seeds, guidance=2.0, class_labels=[1])
    torch.testing.assert_close(via_list, generate(m, "dpmpp_2m", t, None, seeds, guidance=2.0, labels=[1] * 5), rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="not both"):
        generate(m, "euler", t, None, [0], labels=[0], class_labels=[0])
    with pytest.raises(ValueError, match=r"labels: must lie in 0\.\.2"):
        generate(m, "euler", t, None, [0], labels=[3])
    with pytest.raises(ValueError, match="labels: need 2 integer labels"):
        generate(m, "euler", t, None, [0, 1], labels=[0])
    with pytest.raises(ValueError, match="labels: model 'ddpm' is not class-conditional"):
        generate(models["ddpm"], "euler", t, None, [0], labels=[0])


def test_latent_model_works_in_latent_space_and_decodes(models):
    m = models["latent"]
    inputs = prepare_job(m, loss="l2")
    assert inputs.sample_shape == (4, 4, 4) and m.image_shape == (1, 16, 16)
    assert inputs.latent and inputs.ld3_config(nfe=4, lr_xi=0.01) == LD3Config.latent(nfe=4, lr_xi=0.01)
    assert inputs.ld3_config().phase2_epochs == 3  # the paper's latent recipe
    z1, z2 = torch.randn(2, 4, 4, 4), torch.randn(2, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(inputs.loss_fn(z1, z2), l2(m.decode(z1), m.decode(z2)))
        t = heuristic("logsnr", m.schedule, 3)
        images = generate(m, "unipc", t, None, [1, 2], batch_size=1)
        latents = get_solver("unipc").fn(m.denoiser, prior_noise([1, 2], (4, 4, 4), m.schedule.sigma_T), t)
        torch.testing.assert_close(images, m.decode(latents).clamp(-1, 1), rtol=0, atol=1e-4)
    assert images.shape == (2, 1, 16, 16)


def test_latent_job_moves_latents_within_the_latent_radius(models):
    m = models["latent"]
    inputs = prepare_job(m, loss="l2")
    # A large step on x'_T reaches the ball's surface: the moves measure the radius itself.
    cfg = small_job(inputs.ld3_config(**LD3_OPTIONS, gamma=0.01, lr_x=1e4))
    assert cfg.ld3.lr_xi == 1e-3 and cfg.ld3.phase2_epochs == 1  # the latent recipe under the job's own options
    states = []
    res = run_model_job(m, cfg, on_checkpoint=states.append)
    assert torch.isfinite(res.learned_t_steps).all()
    x_T = job_pairs(inputs.denoiser, inputs.sample_shape, cfg)["train"].x_T
    r = radius(cfg.ld3, 4 * 4 * 4, m.schedule.sigma_T)  # latent dimensions (64), not the image's (256)
    moved = (states[-1]["x_train"] - x_T.unsqueeze(0)).flatten(2).norm(dim=-1)
    assert float(moved.max()) == pytest.approx(r, rel=1e-4)


def test_text_model_conditions_cycle_over_the_prompts(models):
    m = models["sd"]
    inputs = prepare_job(m, loss="l2", guidance=3.0, prompts=PROMPTS)
    emb = m.encode_prompts(PROMPTS)
    torch.testing.assert_close(inputs.conditions([0, 1, 2, 3, 7]), emb[[0, 1, 2, 0, 1]])
    assert isinstance(inputs.denoiser, GuidedNetwork) and inputs.denoiser.scale == 3.0
    torch.testing.assert_close(inputs.denoiser.uncond, m.encode_prompts([""])[0])
    t = heuristic("logsnr", m.schedule, 3)
    images = generate(m, "euler", t, None, [0, 1, 2, 3], guidance=3.0, prompts=PROMPTS, batch_size=3)
    again = generate(m, "euler", t, None, [3], guidance=3.0, prompts=PROMPTS)
    assert images.shape == (4, 3, 8, 8)
    torch.testing.assert_close(again, images[3:], rtol=0, atol=1e-4)
    with pytest.raises(ValueError, match="prompts: model 'sd' is text-conditional and needs a non-empty list"):
        prepare_job(m, loss="l2")
    with pytest.raises(ValueError, match="prompts: .*non-empty list"):
        prepare_job(m, loss="l2", prompts="a cat")
    with pytest.raises(ValueError, match="labels: model 'sd' is not class-conditional"):
        generate(m, "euler", t, None, [0], prompts=PROMPTS, labels=[0])


def test_the_guard_s_feature_map_is_the_catalog_s_on_decoded_images(models, tmp_path):
    import dataclasses
    from pathlib import Path

    from ld3core.classifier import FEATURE_DIM, classifier_features, load_classifier
    from worker.evaluate import CLASSIFIER_FOLDER

    root = Path(__file__).resolve().parents[2] / "models"
    assert prepare_job(models["ddpm"], loss="l2", model_root=root).features is None  # the catalog names none
    net = load_classifier(root / CLASSIFIER_FOLDER)
    for key in ("ddpm", "latent"):
        m = dataclasses.replace(models[key], spec=dataclasses.replace(models[key].spec, guard_features="digits-classifier"))
        assert prepare_job(m, loss="l2").features is None  # no model root: nowhere to find it
        feats = prepare_job(m, loss="l2", model_root=root).features
        x = torch.randn(3, *m.sample_shape)
        images = m.decode(x) if m.latent else x
        assert feats(x).shape == (3, FEATURE_DIM) and torch.equal(feats(x), classifier_features(net, images))
