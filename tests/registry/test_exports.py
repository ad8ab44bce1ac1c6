"""registry.exports on hand-computed versions (VP discrete, EDM, flow), with diffusers round trips."""

import math
import subprocess
import sys

import numpy as np
import pytest
from diffusers import DPMSolverMultistepScheduler, EulerDiscreteScheduler, FlowMatchEulerDiscreteScheduler

from registry.exports import FORMATS, decimal_text, export, round_timesteps

N_TRAIN = 1000
# DDPM's linear betas, by definition (the model's alphas_cumprod).
ALPHAS_CUMPROD = np.cumprod(1.0 - np.linspace(1e-4, 0.02, N_TRAIN)).tolist()


def ve_sigma(k: int) -> float:
    return math.sqrt((1.0 - ALPHAS_CUMPROD[k]) / ALPHAS_CUMPROD[k])


def vp_version(indices, model_indices=None, *, solver="dpmpp_2m", nfe=None):
    """A VP-discrete version whose step times sit on training indices k (t = (k + 1) / N)."""
    model_indices = indices if model_indices is None else model_indices
    return {
        "model_key": "ddpm", "solver": solver, "nfe": nfe or len(indices) - 1, "guidance": None, "version": 3,
        "t_steps": [(k + 1) / N_TRAIN for k in indices], "t_model": [(k + 1) / N_TRAIN for k in model_indices],
        "time_space": "vp_discrete t in (0,1]", "sigmas": [ve_sigma(k) for k in indices],
        "model_timesteps": [float(k) for k in model_indices],
        "schedule_config": {"name": "vp_discrete", "alphas_cumprod": ALPHAS_CUMPROD}, "source": "ld3",
    }


def edm_version(ts=(80.0, 10.0, 1.0, 0.1, 0.002), **kw):
    return {"model_key": "edm", "solver": "heun", "nfe": 2 * (len(ts) - 1) - 1, "guidance": None, "version": 1,
            "t_steps": list(ts), "t_model": list(ts), "time_space": "edm t = sigma", "sigmas": list(ts),
            "model_timesteps": list(ts), "schedule_config": {"name": "edm", "T": 80.0, "t_min": 0.002}, "source": "ld3", **kw}


def flow_version(ts=(0.999, 0.7, 0.4, 0.1, 0.001), t_model=None):
    t_model = list(ts) if t_model is None else list(t_model)
    return {"model_key": "rf", "solver": "euler", "nfe": len(ts) - 1, "guidance": None, "version": 2,
            "t_steps": list(ts), "t_model": t_model, "time_space": "flow t = sigma", "sigmas": list(ts),
            "model_timesteps": [t * 1000 for t in t_model], "schedule_config": {"name": "flow", "T": 0.999, "t_min": 0.001},
            "source": "ld3"}


VP = vp_version([999, 600, 250, 80, 0])


def test_every_format_has_the_version_and_its_caveats():
    for fmt in FORMATS:
        out = export(VP, fmt)
        assert (out["format"], out["version"]) == (fmt, 3)
        assert isinstance(out["caveats"], list)


def test_every_export_validates_as_the_api_schema():
    from registry.schemas import ScheduleExport

    for v in (VP, edm_version(), flow_version()):
        for fmt in FORMATS:
            assert ScheduleExport(**export(v, fmt)).format == fmt


def test_an_even_heun_budget_states_the_evaluations_it_really_spends():
    out = export(edm_version(nfe=8), "k-diffusion")  # 4 Heun steps fit 8: they spend 7
    assert any("7 evaluations" in c for c in out["caveats"])


def test_unknown_format_names_the_field_and_the_known_values():
    with pytest.raises(ValueError, match=r"format: unknown export format 'onnx'; known: raw, diffusers, k-diffusion, comfyui"):
        export(VP, "onnx")


def test_raw_is_the_stored_fields_and_re_exports_identically():
    raw = export(VP, "raw")["payload"]
    assert raw["t_steps"] == VP["t_steps"] and raw["schedule_config"] == VP["schedule_config"]
    for fmt in FORMATS:
        assert export(raw, fmt) == export(VP, fmt)


def test_attribute_objects_are_read_like_mappings():
    class Row:
        pass

    row = Row()
    row.__dict__.update(VP)
    assert export(row, "k-diffusion") == export(VP, "k-diffusion")


def test_k_diffusion_and_comfyui_replace_the_last_sigma_by_zero():
    for fmt in ("k-diffusion", "comfyui"):
        out = export(VP, fmt)
        assert out["payload"]["sigmas"] == [ve_sigma(999), ve_sigma(600), ve_sigma(250), ve_sigma(80), 0.0]
        assert any("trailing zero" in c and f"{ve_sigma(0):.6g}" in c for c in out["caveats"])
    text = export(VP, "comfyui")["payload"]["sigmas_text"]
    assert [float(x) for x in text.split(",")] == pytest.approx(export(VP, "comfyui")["payload"]["sigmas"], rel=1e-8)


def manual_sigmas(text: str) -> list[float]:
    """What ComfyUI's ManualSigmas node makes of its string (comfy_extras/nodes_custom_sampler.py:
    ``re.findall(r"[-+]?(?:\\d*\\.*\\d+)", sigmas)``, each match through float, then a float32 tensor)."""
    import re

    return [float(np.float32(float(m))) for m in re.findall(r"[-+]?(?:\d*\.*\d+)", text)]


def test_comfyui_text_is_what_the_manual_sigmas_node_parses():
    """Plain decimals only: ManualSigmas reads '1e-05' as 1 and -5. Small and large sigmas, 9 digits."""
    small = vp_version([999, 600, 250, 80, 0])
    small = {**small, "sigmas": [*small["sigmas"][:-2], 3.3e-5, 1.2345678e-6]}  # a tiny VE sigma near the end
    for v in (VP, small, edm_version(), edm_version(ts=(1234.5678901, 80.0, 1e-3, 2e-5, 1e-6)), flow_version()):
        payload = export(v, "comfyui")["payload"]
        text = payload["sigmas_text"]
        assert "e" not in text.lower(), text
        assert manual_sigmas(text) == [float(np.float32(s)) for s in payload["sigmas"]], text
    assert decimal_text(1.2345678e-6) == "0.0000012345678" and decimal_text(80.0) == "80" and decimal_text(0.0) == "0"


def test_comfyui_caveats_name_the_manual_sigmas_node():
    caveats = export(VP, "comfyui")["caveats"]
    assert any("ManualSigmas" in c and "sigmas_text" in c and "SamplerCustom" in c for c in caveats), caveats


def test_every_export_names_the_final_step_rule():
    """Versions from before the rule are sigma_min; a version's training config or a raw export says otherwise."""
    zero = {**VP, "config": {"ld3": {"final": "zero"}}}
    for fmt in FORMATS:
        assert export(VP, fmt)["payload"]["final"] == "sigma_min"
        assert export(zero, fmt)["payload"]["final"] == "zero"
        assert export(export(zero, "raw")["payload"], fmt) == export(zero, fmt)
    assert export({**VP, "config": {"ld3": {"final": "sigma_min"}}}, "raw")["payload"]["final"] == "sigma_min"
    with pytest.raises(ValueError, match=r"final: unknown final step 'last'; known: sigma_min, zero"):
        export({**VP, "final": "last"}, "raw")


def test_the_trailing_zero_is_exact_for_a_schedule_learned_to_zero():
    zero = {**VP, "config": {"ld3": {"final": "zero"}}}
    for fmt in ("k-diffusion", "comfyui"):
        assert any("trailing zero: exact" in c and "final='zero'" in c for c in export(zero, fmt)["caveats"])
        assert any("unlike the learned schedule (final='sigma_min')" in c for c in export(VP, fmt)["caveats"])
    assert export(VP, "diffusers")["payload"]["final_sigmas_type"] == "sigma_min"
    assert export(zero, "diffusers")["payload"]["final_sigmas_type"] == "zero"
    assert any("learned with final_sigmas_type='zero'" in c for c in export(zero, "diffusers")["caveats"])


def test_edm_sigmas_are_the_times():
    out = export(edm_version(), "k-diffusion")
    assert out["payload"]["sigmas"] == [80.0, 10.0, 1.0, 0.1, 0.0]
    assert out["payload"]["n_steps"] == 4 and out["payload"]["nfe"] == 7
    assert out["payload"]["evals_per_step"] == 2
    assert any("two evaluations each, the last step Euler: 7 evaluations" in c for c in out["caveats"])
    d = export(edm_version(), "diffusers")
    assert d["payload"]["timesteps"] is None and d["payload"]["sigmas"] == [80.0, 10.0, 1.0, 0.1, 0.0]


def test_flow_sigmas_are_flow_times_in_every_sigma_format():
    for fmt in ("k-diffusion", "comfyui"):
        out = export(flow_version(), fmt)
        assert out["payload"]["sigmas"] == [0.999, 0.7, 0.4, 0.1, 0.0]
        assert any("flow sigmas" in c for c in out["caveats"])


def test_diffusers_vp_rounds_fractional_timesteps_and_flags_duplicates():
    v = vp_version([999, 600, 250, 80, 0], [999, 600.4, 250.5, 79.6, 0])
    out = export(v, "diffusers")
    assert out["payload"]["timesteps"] == [999, 600, 251, 80]
    assert out["payload"]["num_train_timesteps"] == N_TRAIN
    assert any("rounded to the nearest integer (max change 0.5)" in c for c in out["caveats"])
    assert any("decoupled times" in c for c in out["caveats"])
    assert not any("duplicates" in c for c in out["caveats"])
    dup = export(vp_version([999, 501, 499, 0], [999, 500.4, 499.6, 0]), "diffusers")
    assert dup["payload"]["timesteps"] == [999, 500, 500]
    assert any("steps 1 and 2 (both 500)" in c for c in dup["caveats"])


def test_round_timesteps_rounds_halves_up():
    assert round_timesteps([2.5, 1.5, 0.49]) == ([3, 2, 0], [])
    assert round_timesteps([3.4, 2.6]) == ([3, 3], [(0, 1, 3)])


def test_flow_diffusers_states_the_shift_and_keeps_decoupled_timesteps():
    out = export(flow_version(t_model=(0.999, 0.72, 0.41, 0.1, 0.001)), "diffusers")
    assert out["payload"]["sigmas"] == [0.999, 0.7, 0.4, 0.1]
    assert out["payload"]["timesteps"] == pytest.approx([999.0, 720.0, 410.0, 100.0])
    assert any("shift=1.0" in c and "use_dynamic_shifting=False" in c for c in out["caveats"])
    assert any("decoupled times" in c for c in out["caveats"])


@pytest.mark.parametrize("field, change, message", [
    ("sigmas", lambda v: v["sigmas"].pop(), "sigmas: has 4 values, t_steps has 5"),
    ("t_steps", lambda v: v["t_steps"].__setitem__(2, 0.9), "t_steps: must be positive, finite and strictly decreasing"),
    ("nfe", lambda v: v.pop("nfe"), "nfe: missing"),
    ("solver", lambda v: v.__setitem__("solver", "rk45"), "solver: unknown solver 'rk45'; known: dpmpp_2m"),
    ("sigmas", lambda v: v["sigmas"].__setitem__(1, 0.69), r"sigmas: value 1 is 0.69, but a flow schedule's sigma is its time"),
])
def test_inconsistent_versions_are_refused_naming_the_field(field, change, message):
    v = flow_version()
    change(v)
    with pytest.raises(ValueError, match=message):
        export(v, "raw")


# Round trips through real diffusers schedulers.


def test_diffusers_timesteps_round_trip_through_dpmsolver():
    payload = export(VP, "diffusers")["payload"]
    sched = DPMSolverMultistepScheduler(num_train_timesteps=N_TRAIN, beta_schedule="linear")
    sched.set_timesteps(timesteps=payload["timesteps"])
    assert sched.timesteps.tolist() == [999, 600, 250, 80]
    assert sched.sigmas.tolist() == pytest.approx(VP["sigmas"][:-1] + [0.0], rel=1e-5)
    sched_min = DPMSolverMultistepScheduler(num_train_timesteps=N_TRAIN, beta_schedule="linear", final_sigmas_type="sigma_min")
    sched_min.set_timesteps(timesteps=payload["timesteps"])
    assert sched_min.sigmas.tolist() == pytest.approx(VP["sigmas"], rel=2e-4)  # t_N kept (float32 alphas_cumprod)
    ac = sched.alphas_cumprod.double()
    assert payload["train_sigma_range"] == pytest.approx([((1 - ac[0]) / ac[0]).sqrt().item(), ((1 - ac[-1]) / ac[-1]).sqrt().item()], rel=2e-4)


def test_diffusers_sigmas_round_trip_through_euler():
    payload = export(VP, "diffusers")["payload"]
    sched = EulerDiscreteScheduler(num_train_timesteps=N_TRAIN, beta_schedule="linear")
    sched.set_timesteps(sigmas=payload["sigmas"])
    assert sched.sigmas.tolist() == pytest.approx(VP["sigmas"][:-1] + [0.0], rel=1e-6)
    assert sched.timesteps.tolist() == pytest.approx([999, 600, 250, 80], abs=1e-2)


def test_diffusers_flow_sigmas_round_trip_through_flow_match_euler():
    v = flow_version(t_model=(0.999, 0.72, 0.41, 0.1, 0.001))
    payload = export(v, "diffusers")["payload"]
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0)
    sched.set_timesteps(sigmas=payload["sigmas"], timesteps=payload["timesteps"])
    assert sched.sigmas.tolist() == pytest.approx([0.999, 0.7, 0.4, 0.1, 0.0], rel=1e-6)
    assert sched.timesteps.tolist() == pytest.approx([999.0, 720.0, 410.0, 100.0], rel=1e-6)
    shifted = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0)
    shifted.set_timesteps(sigmas=payload["sigmas"])
    assert shifted.sigmas[1].item() != pytest.approx(0.7, rel=1e-3)  # why the export says shift must be 1


def test_exports_module_imports_no_torch():
    code = "import sys, registry.exports; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)



def test_a_version_built_the_way_the_worker_builds_it_round_trips():
    """The stored columns from ld3core's schedule and worker.version, exported and fed to diffusers."""
    import torch

    from ld3core.schedules import VPDiscrete
    from worker.version import step_sigmas, time_space

    sch = VPDiscrete.linear()
    t = torch.tensor([1.0, 0.6015, 0.2513, 0.081, 0.001], dtype=torch.float64)  # fractional training indices
    v = {"solver": "dpmpp_2m", "nfe": 4, "version": 1, "t_steps": t.tolist(), "t_model": t.tolist(),
         "time_space": time_space(sch), "sigmas": step_sigmas(sch, t), "model_timesteps": sch.model_time(t).tolist(),
         "schedule_config": sch.config()}
    payload = export(v, "diffusers")["payload"]
    assert payload["timesteps"] == [999, 601, 250, 80]  # 600.5 and 250.3 rounded
    euler = EulerDiscreteScheduler(num_train_timesteps=N_TRAIN, beta_schedule="linear")
    euler.set_timesteps(sigmas=payload["sigmas"])
    assert euler.sigmas.tolist() == pytest.approx(v["sigmas"][:-1] + [0.0], rel=1e-6)
    # diffusers interpolates log sigma between training steps, ld3core log alpha: close, not equal
    assert euler.timesteps.tolist() == pytest.approx(v["model_timesteps"][:-1], abs=0.05)
    dpm = DPMSolverMultistepScheduler(num_train_timesteps=N_TRAIN, beta_schedule="linear")
    dpm.set_timesteps(timesteps=payload["timesteps"])
    assert dpm.timesteps.tolist() == [999, 601, 250, 80]


def test_every_export_says_whether_it_is_exact_and_else_the_measured_cost():
    measured = {"ld3": {"runs": True, "exact": True}, "diffusers": {"runs": True, "exact": True},
                "k-diffusion": {"runs": True, "exact": False, "final": "zero", "test": {"mean": 0.0123, "sem": 0.001},
                                "cost": {"mean": 0.0021, "sem": 0.0004}},
                "comfyui": {"runs": False, "exact": False}}
    v = {**vp_version([999, 700, 400, 100, 0]),
         "quality": {"source": "ld3", "learned": {"mean": 0.0102, "sem": 0.001}, "consumers": measured}}
    assert export(v, "raw")["payload"]["exact"] and export(v, "raw")["payload"]["consumers"] == measured
    assert export(v, "diffusers")["payload"]["exact"]
    kd = export(v, "k-diffusion")
    assert not kd["payload"]["exact"]
    assert kd["caveats"][0].startswith("not exact for k-diffusion") and "test loss 0.0123 vs 0.0102 certified" in kd["caveats"][0]
    assert "+0.0021" in kd["caveats"][0]
    comfy = export(v, "comfyui")
    assert not comfy["payload"]["exact"] and "comfyui does not run dpmpp_2m" in comfy["caveats"][0]
    # The raw payload carries the measures, so a re-export says the same.
    assert export(export(v, "raw")["payload"], "k-diffusion")["caveats"][0] == kd["caveats"][0].replace(
        " vs 0.0102 certified", "")
    legacy = vp_version([999, 700, 400, 100, 0])
    assert not export(legacy, "diffusers")["payload"]["exact"]
    assert "cost not measured" in export(legacy, "diffusers")["caveats"][0]


def test_a_consumer_form_worse_than_the_best_heuristic_is_said_so():
    form = {"runs": True, "exact": False, "final": "zero", "test": {"mean": 0.05, "sem": 0.002},
            "cost": {"mean": 0.01, "sem": 0.001}, "minus_best": {"mean": 0.004, "sem": 0.001}}
    v = {**vp_version([999, 700, 400, 100, 0]),
         "quality": {"source": "ld3", "learned": {"mean": 0.04, "sem": 0.001},
                     "best_heuristic": {"name": "time_uniform", "mean": 0.046, "sem": 0.002},
                     "consumers": {"k-diffusion": form}}}
    first = export(v, "k-diffusion")["caveats"][0]
    assert "in that form WORSE than the best heuristic (time_uniform): difference +0.004 ± 0.001" in first
    assert "target='k-diffusion'" in first

    def first_caveat(minus_best, config=None):
        q = {**v["quality"], "consumers": {"k-diffusion": {**form, "minus_best": minus_best}}}
        return export({**v, "quality": q, **({"config": config} if config else {})}, "k-diffusion")["caveats"][0]

    # The guard's one-sided test at the job's guard_z: better, but not beyond noise, is said too.
    assert "not shown better than the best heuristic" in first_caveat({"mean": -0.001, "sem": 0.001})
    assert "best heuristic" not in first_caveat({"mean": -0.002, "sem": 0.001})
    assert "best heuristic" not in first_caveat({"mean": -0.001, "sem": 0.001}, {"guard_z": 0.5})
