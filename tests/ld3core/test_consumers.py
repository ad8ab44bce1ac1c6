"""What each consumer runs of a schedule (ld3core.consumers), a job learning for one (``target``),
and the costs the job measures for the others (ld3core.optimize.consumer_costs)."""

from __future__ import annotations

import pytest
import torch

from ld3core.config import CONSUMERS, JobConfig, LD3Config, job_config
from ld3core.consumers import form, is_exact, snap_timesteps
from ld3core.heuristics import heuristic
from ld3core.models import load_builtin
from ld3core.optimize import job_pairs, per_sample_losses, run_job
from ld3core.schedules import DTYPE, EDM, VPDiscrete


def l2(a, b):
    return ((a - b) ** 2).flatten(1).mean(1)


def test_snap_timesteps_rounds_vp_discrete_times_to_training_steps_with_straight_through_gradients():
    sch = VPDiscrete.linear()
    t = heuristic("time_quadratic", sch, 5).clone().requires_grad_(True)
    snapped = snap_timesteps(t, sch)
    k = sch.model_time(snapped.detach())
    assert torch.allclose(k, torch.round(k), atol=1e-9) and (k - sch.model_time(t.detach())).abs().max() <= 0.5 + 1e-9
    assert not torch.equal(snapped.detach(), t.detach())  # interior times moved
    assert float(snapped[0].detach()) == sch.T and float(snapped[-1].detach()) == sch.t_min
    (g,) = torch.autograd.grad((snapped * torch.arange(6, dtype=DTYPE)).sum(), t)
    assert g.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]  # straight through
    edm_t = heuristic("edm", EDM(), 5)
    assert snap_timesteps(edm_t, EDM()) is edm_t  # continuous-time schedules keep their times


def test_forms_of_each_consumer():
    sch = VPDiscrete.linear()
    t = heuristic("logsnr", sch, 4)
    tm = t.clone()
    tm[1:-1] -= 0.01
    ours = form("ld3", sch, t, tm, "sigma_min")
    assert is_exact(ours, t, tm, "sigma_min")
    for name in ("diffusers", "k-diffusion", "comfyui"):
        f = form(name, sch, t, tm, "sigma_min")
        assert f.final == "zero" and torch.equal(f.t_model, f.t_steps) and not is_exact(f, t, tm, "sigma_min")
    assert torch.equal(form("k-diffusion", sch, t, tm, "zero").t_steps, t)  # continuous sigmas: not rounded
    snapped = form("diffusers", sch, t, tm, "zero").t_steps
    # Stock diffusers on a VP-discrete model steps on the export's timesteps: the network's times, rounded.
    assert torch.equal(snapped, snap_timesteps(tm, sch)) and not torch.equal(snapped, tm)
    assert torch.equal(form("diffusers", sch, t, t, "zero").t_steps, snap_timesteps(t, sch))
    # A schedule learned for diffusers (integer timesteps, no decoupling, final zero) is exact for it.
    assert is_exact(form("diffusers", sch, snapped, snapped, "zero"), snapped, snapped, "zero")


def test_a_target_fixes_what_its_consumer_cannot_run_and_refuses_conflicts():
    cfg = job_config("dpmpp_2m", 5, {"target": "diffusers"})
    assert (cfg.ld3.target, cfg.ld3.decoupled, cfg.ld3.final) == ("diffusers", False, "zero")
    assert job_config("dpmpp_2m", 5).ld3.target == "ld3" and job_config("dpmpp_2m", 5).ld3.decoupled
    with pytest.raises(ValueError, match="decoupled: True conflicts with target 'k-diffusion'"):
        job_config("dpmpp_2m", 5, {"target": "k-diffusion", "decoupled": True})
    with pytest.raises(ValueError, match="target: comfyui runs euler, heun, dpmpp_2m as learned here, not unipc"):
        job_config("unipc", 5, {"target": "comfyui"})
    with pytest.raises(ValueError, match="target: unknown consumer 'sd'"):
        LD3Config(target="sd")
    with pytest.raises(ValueError, match="final: must be 'zero' for target 'diffusers'"):
        LD3Config(solver="dpmpp_2m", target="diffusers", decoupled=False)


def _job(target: str, **ld3):
    kw = {} if target == "ld3" else {"decoupled": False, "final": "zero"}
    cfg = LD3Config(solver="dpmpp_2m", nfe=5, loss="l2", phase1_epochs=1, phase2_epochs=2, target=target, **{**kw, **ld3})
    return JobConfig(ld3=cfg, n_train=4, n_val=4, n_test=16, guard_z=0.0)


def test_a_job_for_stock_diffusers_learns_integer_timesteps_and_is_exact_for_it():
    m = load_builtin("gmm2d-vpdiscrete")
    sch = m.denoiser.schedule
    res = run_job(m.denoiser, m.sample_shape, _job("diffusers"), l2, dtype=torch.float64)
    for t in (res.t_steps, res.learned_t_steps):
        k = sch.model_time(t)
        assert torch.allclose(k, torch.round(k), atol=1e-9), k.tolist()
    assert torch.equal(res.learned_t_model, res.learned_t_steps)
    assert res.consumers["diffusers"] == {"runs": True, "exact": True}
    assert res.consumers["ld3"] == {"runs": True, "exact": True}
    assert res.consumers["k-diffusion"] == {"runs": True, "exact": True}  # integer times are sigmas like any other


def test_the_job_measures_each_consumers_form_against_the_served_schedule():
    m = load_builtin("gmm2d-vpdiscrete")
    cfg = _job("ld3")
    res = run_job(m.denoiser, m.sample_shape, cfg, l2, dtype=torch.float64)
    assert res.consumers["ld3"] == {"runs": True, "exact": True}
    served = res.test["ld3"] if res.source == "ld3" else res.test[res.source]
    pairs = job_pairs(m.denoiser, m.sample_shape, cfg, dtype=torch.float64)["test"]
    for name in ("diffusers", "k-diffusion", "comfyui"):
        got = res.consumers[name]
        assert got["runs"] and not got["exact"] and got["final"] == "zero"
        # Recompute the form's loss independently on the job's test pairs.
        f = form(name, m.denoiser.schedule, res.t_steps, res.t_model, cfg.ld3.final)
        per = per_sample_losses(m.denoiser, "dpmpp_2m", f.t_steps, f.t_model, pairs, l2, cfg.batch_size, f.final)
        assert got["test"]["mean"] == pytest.approx(float(per.mean()), rel=1e-9)
        assert got["cost"]["mean"] == pytest.approx(float(per.mean()) - served["mean"], rel=1e-6, abs=1e-12)
        best = res.test[res.best_heuristic]["mean"]
        assert got["minus_best"]["mean"] == pytest.approx(float(per.mean()) - best, rel=1e-6, abs=1e-12)
    assert res.consumers["k-diffusion"] == res.consumers["comfyui"]  # the same form, measured once
    assert set(res.consumers) == set(CONSUMERS)


def test_a_consumer_that_does_not_run_the_solver_is_marked():
    m = load_builtin("gmm2d-vpdiscrete")
    cfg = JobConfig(ld3=LD3Config(solver="ipndm", nfe=4, loss="l2", phase1_epochs=1, phase2_epochs=1), n_train=4, n_val=4,
                    n_test=8)
    res = run_job(m.denoiser, m.sample_shape, cfg, l2, dtype=torch.float64)
    assert res.consumers["diffusers"] == {"runs": False, "exact": False}
    assert res.consumers["ld3"]["exact"]


def test_k_diffusion_runs_only_euler_of_ours_on_a_flow_model():
    from ld3core.consumers import runs
    from ld3core.schedules import RectifiedFlow

    for consumer in ("k-diffusion", "comfyui"):
        assert runs(consumer, "dpmpp_2m", VPDiscrete.linear()) and runs(consumer, "heun", EDM())
        assert runs(consumer, "euler", RectifiedFlow())
        assert not runs(consumer, "dpmpp_2m", RectifiedFlow()) and not runs(consumer, "heun", RectifiedFlow())
    assert runs("diffusers", "dpmpp_2m", RectifiedFlow()) and runs("ld3", "ipndm", RectifiedFlow())
    m = load_builtin("gmm2d-flow")
    cfg = JobConfig(ld3=LD3Config(solver="dpmpp_2m", nfe=4, loss="l2", phase1_epochs=1, phase2_epochs=1), n_train=4,
                    n_val=4, n_test=8)
    res = run_job(m.denoiser, m.sample_shape, cfg, l2, dtype=torch.float64)
    assert res.consumers["k-diffusion"] == res.consumers["comfyui"] == {"runs": False, "exact": False}
    assert res.consumers["diffusers"]["runs"]
