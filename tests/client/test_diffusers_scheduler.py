"""client.diffusers_scheduler: diffusers pipelines with ``LD3Scheduler`` compute what ld3core's solver computes.

Every solver family, both final rules, decoupled fractional network times, on the four shipped models and a
tiny Stable-Diffusion-style text pipeline: ``DDPMPipeline`` (ddpm-digits; digits-flow, a rectified-flow UNet
that no stock pipeline takes unconditionally, runs in it too: its loop is the generic one), ``LDMPipeline``
(digits-latent, the VAE in its ``vqvae`` slot: its loop only calls ``decode``), ``StableDiffusionPipeline``
with classifier-free guidance (the tiny text pipeline) and, for class-conditional digits-cfg, which no stock
pipeline takes (``DiTPipeline`` wants a transformer), the guided loop diffusers' class-conditional pipelines
run, written out here. Each pipeline's result is compared with ``SOLVERS[name].ending(final)`` on the same
network from the same x_T, and its network calls are counted.
"""

import json
from pathlib import Path

import pytest
import torch
from diffusers import DDPMPipeline, DDPMScheduler, FlowMatchEulerDiscreteScheduler, LDMPipeline, StableDiffusionPipeline
from tiny_pipelines import save_text_pipeline

from client.diffusers_scheduler import LD3Scheduler
from ld3core.denoisers import to_x0
from ld3core.heuristics import heuristic
from ld3core.solvers import FINALS, SOLVERS
from registry.catalog import ModelSpec
from registry.exports import export
from worker.evaluate import read_catalog
from worker.loaders import LoadedModel, load_model, weights_sha256
from worker.version import model_timesteps, step_sigmas, time_space

MODELS = Path(__file__).resolve().parents[2] / "models"
FAMILIES = ("euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "unipc_bh1_3", "ipndm")
VARIANTS = tuple(sorted(set(SOLVERS) - set(FAMILIES)))  # dpmpp_3m_exact, unipc orders 2, ipndm orders 2 and 3
N_STEPS = 5  # a third-order step in the middle, the warm start and lower-order-final rules at either end
BATCH, SEED, GUIDANCE = 2, 7, 3.0
PROMPTS = ["a red cat", "dog"]
ATOL = 1e-5  # float32
# Guidance combined on x0 (ld3core) or on the network outputs (pipelines): float32 roundings that the
# first steps amplify by 1/alpha_T (about 160 for DDPM's betas).
GUIDANCE_RTOL = 1e-4


def stored_version(loaded: LoadedModel, solver: str, final: str, n: int = N_STEPS) -> dict:
    """A version as the worker stores it: logSNR steps, network times a third of the way to the next step
    (decoupled, fractional: a DDPM index like 872.4, a flow time * 1000 like 712.9)."""
    sch = loaded.schedule
    t = heuristic("logsnr", sch, n)
    t_model = torch.cat([t[:-1] - (t[:-1] - t[1:]) / 3, t[-1:]])
    return {"model_key": loaded.spec.key, "solver": solver, "nfe": SOLVERS[solver].nfe(n), "guidance": None, "version": 1,
            "t_steps": t.tolist(), "t_model": t_model.tolist(), "time_space": time_space(sch), "sigmas": step_sigmas(sch, t),
            "model_timesteps": model_timesteps(loaded, t_model), "schedule_config": sch.config(), "source": "ld3", "final": final}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, LoadedModel]:
    catalog = read_catalog(MODELS)
    out = {key: load_model(catalog[key], MODELS) for key in ("ddpm-digits", "digits-latent", "digits-flow", "digits-cfg")}
    root = tmp_path_factory.mktemp("models")
    save_text_pipeline(root / "tiny-sd", root / "vocab")
    spec = ModelSpec(key="tiny-sd", format="diffusers", location="tiny-sd", schedule="from_scheduler_config",
                     prediction="from_scheduler_config", sample_shape=(4, 4, 4), image_shape=(3, 8, 8), conditioning="text",
                     sha256=weights_sha256(root / "tiny-sd"))
    out["tiny-sd"] = load_model(spec, root)
    return out


def noise(shape: tuple[int, ...]) -> torch.Tensor:
    """What the pipelines draw with ``generator=torch.Generator().manual_seed(SEED)`` (``randn_tensor`` on the CPU)."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(SEED))


# Each run: the pipeline with `scheduler` -> (its x_T, its final sample, its output, that output made from a final sample).


def run_ddpm_pipeline(loaded, scheduler):
    pipe = DDPMPipeline(unet=loaded.module, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=BATCH, generator=torch.Generator().manual_seed(SEED), num_inference_steps=scheduler.nfe,
                  output_type="pt").images
    return noise((BATCH, *loaded.sample_shape)), images, lambda x: (x / 2 + 0.5).clamp(0, 1)


def run_ldm_pipeline(loaded, scheduler):
    pipe = LDMPipeline(vqvae=loaded.vae, unet=loaded.module, scheduler=scheduler)
    pipe.set_progress_bar_config(disable=True)
    images = pipe(batch_size=BATCH, generator=torch.Generator().manual_seed(SEED), num_inference_steps=scheduler.nfe,
                  output_type="np").images

    def output(x):
        return torch.from_numpy(pipe.vqvae.decode(x / pipe.vqvae.config.scaling_factor).sample.div(2).add(0.5).clamp(0, 1)
                                .permute(0, 2, 3, 1).numpy())

    return noise((BATCH, *loaded.sample_shape)) * scheduler.init_noise_sigma, torch.from_numpy(images), output


def run_class_guided_loop(loaded, scheduler):
    """The loop of diffusers' class-conditional pipelines (DiTPipeline's) for a UNet2DModel with class labels."""
    unet, labels = loaded.module, torch.arange(BATCH)
    latents = noise((BATCH, *loaded.sample_shape)) * scheduler.init_noise_sigma
    class_input = torch.cat([labels, loaded.null_cond.expand(BATCH)])
    scheduler.set_timesteps(scheduler.nfe)
    with torch.no_grad():
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            cond, uncond = unet(model_input, t, class_labels=class_input).sample.chunk(2)
            latents = scheduler.step(uncond + GUIDANCE * (cond - uncond), t, latents).prev_sample
    return noise((BATCH, *loaded.sample_shape)) * scheduler.init_noise_sigma, latents, lambda x: x


def run_text_pipeline(loaded, scheduler):
    pipe = StableDiffusionPipeline(vae=loaded.vae, text_encoder=loaded.prompt_encoder.text_encoder,
                                   tokenizer=loaded.prompt_encoder.tokenizer, unet=loaded.module, scheduler=scheduler,
                                   safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    latents = noise((len(PROMPTS), *loaded.sample_shape))
    out = pipe(PROMPTS, num_inference_steps=scheduler.nfe, guidance_scale=GUIDANCE, latents=latents, output_type="latent").images
    return latents * scheduler.init_noise_sigma, out, lambda x: x


RUNS = {"ddpm-digits": run_ddpm_pipeline, "digits-flow": run_ddpm_pipeline, "digits-latent": run_ldm_pipeline,
        "digits-cfg": run_class_guided_loop, "tiny-sd": run_text_pipeline}


def conditions(loaded):
    """The batch's class labels or prompt embeddings (None: unconditional)."""
    if loaded.conditioning == "class":
        return torch.arange(BATCH)
    return loaded.encode_prompts(PROMPTS) if loaded.conditioning == "text" else None


class GuidedAsPipelines:
    """Classifier-free guidance as diffusers' pipelines compute it: one network call on the doubled batch
    (Stable Diffusion puts the unconditional half first, DiT the conditional), the two outputs combined,
    uncond + w (cond - uncond), then turned into x0. ld3core's ``GuidedDenoiser`` (the worker's, what a
    version is certified with) combines the x0 predictions: the same affine combination, other roundings."""

    def __init__(self, loaded, cond, uncond_first):
        uncond = loaded.null_cond.expand(len(cond), *loaded.null_cond.shape)
        self.net, self.schedule, self.prediction = loaded.net, loaded.schedule, loaded.prediction
        self.model_time = loaded.model_time or loaded.schedule.model_time
        self.cond, self.uncond_first = torch.cat([uncond, cond] if uncond_first else [cond, uncond]), uncond_first

    def __call__(self, x, t):
        first, second = self.net(torch.cat([x, x]), self.model_time(t).to(torch.float32).expand(2 * len(x)), self.cond).chunk(2)
        uncond, cond = (first, second) if self.uncond_first else (second, first)
        return to_x0(uncond + GUIDANCE * (cond - uncond), x, t, self.schedule, self.prediction)


def check_pipeline(loaded, solver, final, record_property):
    """Run the pipeline with ``LD3Scheduler`` and ld3core's solver from its x_T; assert NFE network calls and
    equal results (through the network as the pipeline guides it: no rounding of the scheduler's own; through
    ld3core's guided denoiser: up to the rounding of the other guidance combination)."""
    v = stored_version(loaded, solver, final)
    scheduler = LD3Scheduler.from_version(v)  # epsilon for the VP models, flow velocity for digits-flow
    seen: list[torch.Tensor] = []  # the sample of the first step call, then every prev_sample
    step = scheduler.step

    def recording_step(model_output, timestep, sample, *args, **kwargs):
        out = step(model_output, timestep, sample, *args, **kwargs)
        seen.extend([sample] if not seen else [])
        seen.append(out[0] if isinstance(out, tuple) else out.prev_sample)
        return out

    scheduler.step = recording_step
    calls = []
    hook = loaded.module.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        x_T, output, make_output = RUNS[loaded.spec.key](loaded, scheduler)
    finally:
        hook.remove()
    assert len(calls) == v["nfe"] == len(scheduler.timesteps)
    assert torch.equal(seen[0], x_T)  # the pipeline started from the noise it was given
    cond = conditions(loaded)
    run = SOLVERS[solver].ending(final)
    t_steps, t_model = (torch.tensor(v[k], dtype=torch.float64) for k in ("t_steps", "t_model"))
    with torch.no_grad():
        denoiser = loaded.denoiser if cond is None else GuidedAsPipelines(loaded, cond, uncond_first=loaded.conditioning == "text")
        expected = run(denoiser, x_T, t_steps, t_model)
        diff = max((seen[-1] - expected).abs().max().item(), (output - make_output(expected)).abs().max().item())
        record_property("max_abs_diff", diff)
        assert diff <= ATOL, f"{loaded.spec.key} {solver} {final}: max |pipeline - ld3core| = {diff:.3g}"
        if cond is not None:
            certified = run(loaded.conditional(GUIDANCE).bind(cond), x_T, t_steps, t_model)
            diff = (seen[-1] - certified).abs().max().item()
            record_property("max_abs_diff_x0_guidance", diff)
            assert diff <= GUIDANCE_RTOL * max(1.0, certified.abs().max().item())


@pytest.mark.parametrize("final", FINALS)
@pytest.mark.parametrize("solver", FAMILIES)
@pytest.mark.parametrize("model", list(RUNS))
def test_a_pipeline_computes_what_the_solver_computes_in_nfe_calls(models, model, solver, final, record_property):
    check_pipeline(models[model], solver, final, record_property)


@pytest.mark.parametrize("final", FINALS)
@pytest.mark.parametrize("solver", VARIANTS)
def test_every_other_solver_variant_in_ddpm_pipeline(models, solver, final, record_property):
    check_pipeline(models["ddpm-digits"], solver, final, record_property)


def test_the_scheduler_holds_the_versions_network_inputs(models):
    loaded = models["ddpm-digits"]
    v = stored_version(loaded, "heun", "sigma_min")
    s = LD3Scheduler.from_version(v)
    assert s.config.prediction_type == "epsilon" and s.order == 1 and len(s) == 1000
    assert s.timesteps.dtype == torch.float32 and len(s.timesteps) == s.nfe == 2 * N_STEPS - 1
    # Heun: the step's start, then its corrector at the next step's network time, which the next step reuses.
    m = v["model_timesteps"]
    want = [m[0]] + [k for k in m[1:N_STEPS] for _ in range(2)]
    assert s.timesteps.tolist() == pytest.approx(want, rel=1e-7)
    assert any(k != round(k) for k in want)  # fractional: nothing rounded
    assert s.init_noise_sigma == pytest.approx(float(loaded.schedule.sigma(v["t_steps"][0])), rel=1e-12)


def test_the_prediction_type_comes_from_the_pipelines_scheduler(models):
    flow = stored_version(models["digits-flow"], "euler", "zero")
    assert LD3Scheduler.from_version(flow, scheduler=FlowMatchEulerDiscreteScheduler()).config.prediction_type == "flow_prediction"
    assert LD3Scheduler.from_version(flow).config.prediction_type == "flow_prediction"
    vp = stored_version(models["ddpm-digits"], "euler", "zero")
    v_pred = LD3Scheduler.from_version(vp, scheduler=DDPMScheduler(prediction_type="v_prediction"))
    assert v_pred.config.prediction_type == "v_prediction"
    assert LD3Scheduler.from_version(vp, "sample", scheduler=v_pred).config.prediction_type == "sample"
    assert LD3Scheduler.from_version({"format": "raw", "payload": vp}).config.prediction_type == "epsilon"
    with pytest.raises(ValueError, match="format: a version or its 'raw' export is needed here .*, got a 'diffusers' export"):
        LD3Scheduler.from_version(export(vp, "diffusers"))


def test_a_scheduler_of_another_noise_schedule_is_refused(models):
    vp = stored_version(models["ddpm-digits"], "euler", "zero")
    with pytest.raises(ValueError, match=r"DDPMScheduler's alphas_cumprod \(1000 values\) are not the version's"):
        LD3Scheduler.from_version(vp, scheduler=DDPMScheduler(beta_schedule="scaled_linear"))
    with pytest.raises(ValueError, match="FlowMatchEulerDiscreteScheduler is a flow-matching scheduler, but the version's noise "
                                         "schedule is 'vp_discrete'"):
        LD3Scheduler.from_version(vp, scheduler=FlowMatchEulerDiscreteScheduler())
    with pytest.raises(ValueError, match="a flow-velocity network needs a flow schedule; this version's is 'vp_discrete'"):
        LD3Scheduler.from_version(vp, "flow_prediction")
    with pytest.raises(ValueError, match="prediction_type: unknown 'eps'"):
        LD3Scheduler.from_version(vp, "eps")


def test_another_step_count_is_refused_naming_the_nfe(models):
    s = LD3Scheduler.from_version(stored_version(models["ddpm-digits"], "dpmpp_2m", "sigma_min"))
    s.set_timesteps()
    s.set_timesteps(N_STEPS)
    with pytest.raises(ValueError, match=rf"in exactly {N_STEPS} network evaluations, but 50 steps were asked for: call the "
                                         rf"pipeline with num_inference_steps={N_STEPS}"):
        s.set_timesteps(50)
    pipe = DDPMPipeline(unet=models["ddpm-digits"].module, scheduler=s)
    with pytest.raises(ValueError, match=f"num_inference_steps={N_STEPS}"):
        pipe(num_inference_steps=1000)
    with pytest.raises(ValueError, match="cannot begin at step 2"):
        s.set_begin_index(2)


def test_each_set_timesteps_starts_a_new_run_and_a_finished_run_takes_no_more_steps(models):
    loaded = models["ddpm-digits"]
    s = LD3Scheduler.from_version(stored_version(loaded, "unipc", "sigma_min"))
    x = noise((1, *loaded.sample_shape))

    def sample(stop=None):
        s.set_timesteps(N_STEPS)
        y = x
        for t in s.timesteps[:stop]:
            y = s.step(loaded.module(y, t).sample, t, y).prev_sample
        return y

    sample(stop=2)  # an abandoned run
    first, second = sample(), sample()
    assert torch.equal(first, second)
    with pytest.raises(ValueError, match=f"all {N_STEPS} network evaluations of this run are answered; call set_timesteps"):
        s.step(torch.zeros_like(x), s.timesteps[-1], second)


def test_a_sample_changed_between_steps_is_refused(models):
    loaded = models["ddpm-digits"]
    s = LD3Scheduler.from_version(stored_version(loaded, "dpmpp_2m", "sigma_min"))
    x = noise((1, *loaded.sample_shape))
    y = s.step(torch.zeros_like(x), s.timesteps[0], x).prev_sample
    s.step(torch.zeros_like(x), s.timesteps[1], y.clone())  # equal values: accepted
    with pytest.raises(ValueError, match="the sample differs from the prev_sample of the last step"):
        s.step(torch.zeros_like(x), s.timesteps[2], y + 1)


def test_the_config_rebuilds_the_scheduler(models, tmp_path):
    s = LD3Scheduler.from_version(stored_version(models["digits-flow"], "dpmpp_3m", "zero"))
    s.save_config(tmp_path)
    again = LD3Scheduler.from_config(json.loads((tmp_path / "scheduler_config.json").read_text()))
    assert torch.equal(again.timesteps, s.timesteps) and again.config.prediction_type == "flow_prediction"
    assert again.run.final == "zero" and again.run.solver.name == "dpmpp_3m"


def test_add_noise_is_alpha_x0_plus_sigma_noise_at_the_calls_time(models):
    loaded = models["ddpm-digits"]
    s = LD3Scheduler.from_version(stored_version(loaded, "euler", "sigma_min"))
    x0, eps = torch.ones(2, 1, 4, 4), noise((2, 1, 4, 4))
    t = torch.tensor(s.evaluation_times[1], dtype=torch.float64)
    want = loaded.schedule.alpha(t).float() * x0 + loaded.schedule.sigma(t).float() * eps
    torch.testing.assert_close(s.add_noise(x0, eps, s.timesteps[1:2].repeat(2)), want)
    with pytest.raises(ValueError, match="add_noise: timesteps .* are not all among"):
        s.add_noise(x0, eps, torch.tensor([500.0]))


def test_a_half_precision_run_works_in_float32_and_hands_back_half(models):
    loaded = models["ddpm-digits"]
    v = stored_version(loaded, "dpmpp_3m", "zero")
    half, full = LD3Scheduler.from_version(v), LD3Scheduler.from_version(v)
    x = noise((1, *loaded.sample_shape)).half()
    y, z = x, x.float()
    for i, t in enumerate(half.timesteps):
        output = torch.full_like(z, 0.25 * i)  # any network output that half precision holds exactly
        y = half.step(output.half(), t, y).prev_sample
        z = full.step(output, t, z).prev_sample
        assert y.dtype == torch.float16
    assert torch.equal(y, z.half())
