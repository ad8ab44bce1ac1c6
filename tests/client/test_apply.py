"""client.apply with real diffusers schedulers and a tiny DDPMPipeline sampling with the applied schedule."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from diffusers import (
    DDIMScheduler,
    DDPMPipeline,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EDMEulerScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    HeunDiscreteScheduler,
    UNet2DModel,
    UniPCMultistepScheduler,
)

from client.apply import ScheduleNotApplicable, apply_schedule, k_diffusion_sigmas, scheduler_solvers
from registry.exports import export

N_TRAIN = 1000
ALPHAS_CUMPROD = np.cumprod(1.0 - np.linspace(1e-4, 0.02, N_TRAIN)).tolist()  # DDPM's linear betas


def ve_sigma(k):
    return math.sqrt((1.0 - ALPHAS_CUMPROD[k]) / ALPHAS_CUMPROD[k])


def vp_version(indices, *, solver="dpmpp_2m", nfe=None, model_indices=None):
    """Step times on training indices k (t = (k + 1) / N); model_indices may be fractional."""
    model_indices = indices if model_indices is None else model_indices
    return {"model_key": "ddpm", "solver": solver, "nfe": nfe or len(indices) - 1, "guidance": None, "version": 1,
            "t_steps": [(k + 1) / N_TRAIN for k in indices], "t_model": [(k + 1) / N_TRAIN for k in model_indices],
            "time_space": "vp_discrete t in (0,1]", "sigmas": [ve_sigma(k) for k in indices],
            "model_timesteps": [float(k) for k in model_indices],
            "schedule_config": {"name": "vp_discrete", "alphas_cumprod": ALPHAS_CUMPROD}, "source": "ld3"}


def flow_version(ts=(0.999, 0.7, 0.4, 0.1, 0.001), t_model=None, solver="euler"):
    t_model = list(ts) if t_model is None else list(t_model)
    return {"model_key": "rf", "solver": solver, "nfe": len(ts) - 1, "guidance": None, "version": 1,
            "t_steps": list(ts), "t_model": t_model, "time_space": "flow t = sigma", "sigmas": list(ts),
            "model_timesteps": [t * 1000 for t in t_model], "schedule_config": {"name": "flow", "T": 0.999, "t_min": 0.001},
            "source": "ld3"}


def edm_version(ts=(80.0, 10.0, 1.0, 0.1, 0.002), solver="euler"):
    n = len(ts) - 1
    return {"model_key": "edm", "solver": solver, "nfe": 2 * n - 1 if solver == "heun" else n, "guidance": None,
            "version": 1, "t_steps": list(ts), "t_model": list(ts), "time_space": "edm t = sigma", "sigmas": list(ts),
            "model_timesteps": list(ts), "schedule_config": {"name": "edm", "T": 80.0, "t_min": 0.002}, "source": "ld3"}


VP = vp_version([999, 600, 250, 80, 0])
VP_HEUN = vp_version([999, 600, 250, 80, 0], solver="heun", nfe=7)


def ddpm_config_scheduler(cls, **kw):
    return cls(num_train_timesteps=N_TRAIN, beta_start=1e-4, beta_end=0.02, beta_schedule="linear", **kw)


def test_dpmsolver_takes_the_integer_timesteps():
    s = apply_schedule(ddpm_config_scheduler(DPMSolverMultistepScheduler), VP)
    assert s.timesteps.tolist() == [999, 600, 250, 80]
    assert s.sigmas.tolist() == pytest.approx([ve_sigma(999), ve_sigma(600), ve_sigma(250), ve_sigma(80), 0.0], rel=1e-5)


def test_exports_and_versions_are_both_accepted():
    for schedule in (export(VP, "diffusers"), export(VP, "raw")):
        s = apply_schedule(ddpm_config_scheduler(DPMSolverMultistepScheduler), schedule)
        assert s.timesteps.tolist() == [999, 600, 250, 80]
    with pytest.raises(ValueError, match="format: a 'diffusers' or 'raw' export is needed here, got a 'comfyui' export"):
        apply_schedule(ddpm_config_scheduler(DPMSolverMultistepScheduler), export(VP, "comfyui"))


def test_euler_takes_the_exact_sigmas():
    s = apply_schedule(ddpm_config_scheduler(EulerDiscreteScheduler), vp_version([999, 600, 250, 80, 0], solver="euler"))
    assert s.sigmas.tolist() == pytest.approx([ve_sigma(999), ve_sigma(600), ve_sigma(250), ve_sigma(80), 0.0], rel=1e-6)
    assert s.timesteps.tolist() == pytest.approx([999, 600, 250, 80], abs=1e-2)


def test_duplicate_rounded_timesteps_are_refused_where_sigmas_cannot_go():
    v = vp_version([999, 501, 499, 0], model_indices=[999, 500.4, 499.6, 0])
    with pytest.raises(ScheduleNotApplicable, match=r"DPMSolverMultistepScheduler: timesteps= needs distinct integers.*\[500\]"):
        apply_schedule(ddpm_config_scheduler(DPMSolverMultistepScheduler), v)
    s = apply_schedule(ddpm_config_scheduler(EulerDiscreteScheduler), {**v, "solver": "euler"})  # sigmas keep the learned times
    assert s.sigmas[1].item() == pytest.approx(ve_sigma(501), rel=1e-6)


def test_unipc_without_flow_sigmas_cannot_take_a_vp_schedule():
    with pytest.raises(ScheduleNotApplicable, match=r"UniPCMultistepScheduler: set_timesteps\(sigmas=...\) refused: .*use_flow_sigmas"):
        apply_schedule(ddpm_config_scheduler(UniPCMultistepScheduler), vp_version([999, 600, 250, 80, 0], solver="unipc_bh2_2"))


def test_ddim_accepts_neither_argument():
    with pytest.raises(ScheduleNotApplicable, match="DDIMScheduler: set_timesteps accepts neither timesteps= nor sigmas="):
        apply_schedule(ddpm_config_scheduler(DDIMScheduler), VP)


def test_heun_takes_a_heun_schedule_at_its_nfe():
    s = apply_schedule(ddpm_config_scheduler(HeunDiscreteScheduler), VP_HEUN)
    assert len(s.timesteps) == VP_HEUN["nfe"]  # 2N - 1 network evaluations
    assert s.timesteps.tolist() == [999, 600, 600, 250, 250, 80, 80]


def test_heun_takes_a_heun_schedule_learned_for_an_even_budget():
    s = apply_schedule(ddpm_config_scheduler(HeunDiscreteScheduler), vp_version([999, 600, 250, 80, 0], solver="heun", nfe=8))
    assert len(s.timesteps) == 7


def test_nfe_mismatch_between_one_and_two_evaluations_per_step_is_refused():
    with pytest.raises(ScheduleNotApplicable, match=r"HeunDiscreteScheduler: evaluates the model twice per step: "
                                                     r"these 4 steps .*dpmpp_2m at NFE 4.* 7 evaluations"):
        apply_schedule(ddpm_config_scheduler(HeunDiscreteScheduler), VP)
    with pytest.raises(ScheduleNotApplicable, match=r"DPMSolverMultistepScheduler: .*learned for heun: 4 steps at NFE 7, 2 evaluations per step"):
        apply_schedule(ddpm_config_scheduler(DPMSolverMultistepScheduler), VP_HEUN)


@pytest.mark.parametrize(("scheduler", "message"), [
    (lambda: ddpm_config_scheduler(EulerDiscreteScheduler), "EulerDiscreteScheduler: runs euler, but this schedule was learned for dpmpp_2m"),
    (lambda: ddpm_config_scheduler(DPMSolverSinglestepScheduler), "DPMSolverSinglestepScheduler: runs singlestep DPM-Solver"),
    (lambda: ddpm_config_scheduler(DDPMScheduler), r"DDPMScheduler: samples stochastically \(ancestral sampling\)"),
    (lambda: ddpm_config_scheduler(DPMSolverMultistepScheduler, solver_order=3), "runs dpmpp_3m, but .* learned for dpmpp_2m"),
    (lambda: ddpm_config_scheduler(DPMSolverMultistepScheduler, algorithm_type="sde-dpmsolver++"),
     "algorithm_type='sde-dpmsolver\\+\\+', which samples stochastically"),
    (lambda: ddpm_config_scheduler(DPMSolverMultistepScheduler, solver_type="heun"), "solver_type='heun' second-order update"),
])
def test_a_schedule_learned_for_another_solver_is_refused(scheduler, message):
    """Before, each of these silently took the DPM-Solver++ 2M schedule."""
    with pytest.raises(ScheduleNotApplicable, match=message + ".*certified only there; .*allow_solver_mismatch=True"):
        apply_schedule(scheduler(), VP)


def test_allow_solver_mismatch_applies_the_steps_anyway():
    s = apply_schedule(ddpm_config_scheduler(EulerDiscreteScheduler), VP, allow_solver_mismatch=True)
    assert s.sigmas.tolist() == pytest.approx([ve_sigma(999), ve_sigma(600), ve_sigma(250), ve_sigma(80), 0.0], rel=1e-6)
    s = apply_schedule(ddpm_config_scheduler(DDPMScheduler), VP, allow_solver_mismatch=True)
    assert s.timesteps.tolist() == [999, 600, 250, 80]
    with pytest.raises(ScheduleNotApplicable, match="evaluates the model twice per step"):  # the NFE check stays
        apply_schedule(ddpm_config_scheduler(HeunDiscreteScheduler), VP, allow_solver_mismatch=True)


def test_the_scheduler_of_each_solver_takes_its_schedule():
    s = apply_schedule(ddpm_config_scheduler(DPMSolverMultistepScheduler, solver_order=3), vp_version([999, 600, 250, 80, 0], solver="dpmpp_3m"))
    assert s.timesteps.tolist() == [999, 600, 250, 80]
    assert scheduler_solvers(UniPCMultistepScheduler(solver_order=3)) == (("unipc_bh2_3", "unipc"), "")
    assert scheduler_solvers(UniPCMultistepScheduler(solver_order=2, solver_type="bh1")) == (("unipc_bh1_2",), "")
    assert scheduler_solvers(FlowMatchEulerDiscreteScheduler()) == (("euler",), "")
    assert scheduler_solvers(FlowMatchEulerDiscreteScheduler(stochastic_sampling=True))[0] == ()
    assert scheduler_solvers(EDMEulerScheduler()) == (("euler",), "")
    assert scheduler_solvers(HeunDiscreteScheduler()) == (("heun",), "")
    with pytest.raises(ScheduleNotApplicable, match="learned for dpmpp_3m_exact"):  # no diffusers scheduler runs it
        apply_schedule(ddpm_config_scheduler(DPMSolverMultistepScheduler, solver_order=3),
                       vp_version([999, 600, 250, 80, 0], solver="dpmpp_3m_exact"))


def test_a_ddpm_pipeline_with_its_own_stochastic_scheduler_is_refused():
    pipe = tiny_pipeline()
    pipe.scheduler = ddpm_config_scheduler(DDPMScheduler)
    with pytest.raises(ScheduleNotApplicable, match="DDPMScheduler: samples stochastically"):
        apply_schedule(pipe, VP)


def test_another_noise_schedule_is_refused():
    sd = DPMSolverMultistepScheduler(num_train_timesteps=N_TRAIN, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    with pytest.raises(ScheduleNotApplicable, match="alphas_cumprod give training sigmas .* another noise schedule"):
        apply_schedule(sd, VP)


def test_flow_match_euler_takes_flow_sigmas_and_decoupled_timesteps():
    s = apply_schedule(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000), flow_version())
    assert s.sigmas.tolist() == pytest.approx([0.999, 0.7, 0.4, 0.1, 0.0], rel=1e-6)
    assert s.timesteps.tolist() == pytest.approx([999.0, 700.0, 400.0, 100.0], rel=1e-6)
    s = apply_schedule(FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000), flow_version(t_model=(0.999, 0.72, 0.41, 0.1, 0.001)))
    assert s.sigmas.tolist() == pytest.approx([0.999, 0.7, 0.4, 0.1, 0.0], rel=1e-6)
    assert s.timesteps.tolist() == pytest.approx([999.0, 720.0, 410.0, 100.0], rel=1e-6)


def test_unipc_with_flow_sigmas_takes_a_flow_schedule():
    s = apply_schedule(UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type="flow_prediction"),
                       flow_version(solver="unipc_bh2_2"))
    assert s.sigmas.tolist() == pytest.approx([0.999, 0.7, 0.4, 0.1, 0.0], rel=1e-6)


@pytest.mark.parametrize("scheduler, message", [
    (lambda: FlowMatchEulerDiscreteScheduler(shift=3.0), "config shift=3.0 would warp the learned flow times; use shift=1.0"),
    (lambda: FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True), "use_dynamic_shifting=True would transform"),
    (lambda: ddpm_config_scheduler(DPMSolverMultistepScheduler), "a flow schedule needs a flow-matching scheduler; this is a discrete VP"),
])
def test_flow_schedules_need_an_unshifted_flow_scheduler(scheduler, message):
    with pytest.raises(ScheduleNotApplicable, match=message):
        apply_schedule(scheduler(), flow_version())


def test_a_vp_schedule_into_a_flow_scheduler_is_refused():
    with pytest.raises(ScheduleNotApplicable, match="FlowMatchEulerDiscreteScheduler: a vp_discrete schedule needs a discrete VP"):
        apply_schedule(FlowMatchEulerDiscreteScheduler(), VP)


def test_edm_euler_reproduces_the_sigmas_through_its_karras_ramp():
    s = apply_schedule(EDMEulerScheduler(), edm_version())
    assert s.sigmas.tolist() == pytest.approx([80.0, 10.0, 1.0, 0.1, 0.0], rel=1e-5)
    with pytest.raises(ScheduleNotApplicable, match="sigma_schedule='exponential'.* ignores custom sigma values"):
        apply_schedule(EDMEulerScheduler(sigma_schedule="exponential"), edm_version())


def test_continuous_vp_has_no_diffusers_scheduler():
    v = {**vp_version([999, 600, 250, 80, 0]), "schedule_config": {"name": "vp_linear"}, "time_space": "vp_linear"}
    with pytest.raises(ScheduleNotApplicable, match="continuous vp_linear schedule"):
        apply_schedule(ddpm_config_scheduler(DPMSolverMultistepScheduler), v)


def test_k_diffusion_sigmas_are_a_plain_list_ending_in_zero():
    for schedule in (VP, export(VP, "raw"), export(VP, "k-diffusion")):
        sigmas = k_diffusion_sigmas(schedule)
        assert type(sigmas) is list and all(type(x) is float for x in sigmas)
        assert sigmas == [ve_sigma(999), ve_sigma(600), ve_sigma(250), ve_sigma(80), 0.0]


def tiny_pipeline():
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(32, 32), layers_per_block=1,
                       norm_num_groups=8, down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"))
    return DDPMPipeline(unet=unet, scheduler=ddpm_config_scheduler(DPMSolverMultistepScheduler))


def test_a_pipeline_samples_with_the_applied_schedule():
    pipe = tiny_pipeline()
    seen = []
    pipe.unet.register_forward_pre_hook(lambda m, args: seen.append(int(args[1])))
    assert apply_schedule(pipe, VP) is pipe.scheduler
    out = pipe(batch_size=2, num_inference_steps=4, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (2, 8, 8, 1) and np.isfinite(out).all()
    assert seen == [999, 600, 250, 80]  # the pipeline's own set_timesteps(4) got the learned schedule
    seen.clear()
    pipe(batch_size=1, num_inference_steps=4, output_type="np")  # pinned: every call, not only the first
    assert seen == [999, 600, 250, 80]
    with pytest.raises(ScheduleNotApplicable, match="pinned by apply_schedule to the learned 4-step schedule.*num_inference_steps=4"):
        pipe(batch_size=1, num_inference_steps=10, output_type="np")


def test_reapplying_to_a_pipeline_replaces_the_pin():
    pipe = tiny_pipeline()
    apply_schedule(pipe, VP)
    apply_schedule(pipe, vp_version([999, 400, 0]))
    seen = []
    pipe.unet.register_forward_pre_hook(lambda m, args: seen.append(int(args[1])))
    pipe(batch_size=1, num_inference_steps=2, output_type="np")
    assert seen == [999, 400]
    apply_schedule(pipe.scheduler, vp_version([999, 300, 0]))  # applied to the pinned scheduler itself
    seen.clear()
    pipe(batch_size=1, num_inference_steps=2, output_type="np")
    assert seen == [999, 300]


def test_apply_module_imports_neither_torch_nor_diffusers():
    code = "import sys, client.apply; bad = {'torch', 'diffusers'} & set(sys.modules); assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)
