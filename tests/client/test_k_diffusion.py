"""client.k_diffusion: the version's solver as a k-diffusion sampler, against k-diffusion's own samplers
(k-diffusion 0.1.1.post1, imported without its package ``__init__``: k_diffusion_support.py) and against
ld3core's solvers, on analytic mixtures and on the shipped networks."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from k_diffusion_support import kd

from client.apply import k_diffusion_sigmas
from client.k_diffusion import LD3Denoiser, LD3Sampler, k_scale, k_sigma
from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser
from ld3core.heuristics import HEURISTICS
from ld3core.schedules import DTYPE, EDM, RectifiedFlow, VPDiscrete, VPLinear
from ld3core.solvers import SOLVERS
from registry.exports import export
from worker.evaluate import read_catalog
from worker.loaders import load_model
from worker.version import step_sigmas

MODELS = Path(__file__).resolve().parents[2] / "models"
MIXTURE = BUILTIN_MIXTURES["gmm2d"]()
SCHEDULES = {"vp_discrete": VPDiscrete.linear, "vp_linear": VPLinear, "edm": EDM, "flow": RectifiedFlow}
FAMILIES = ("euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm")
K_SAMPLERS = {"euler": "sample_euler", "heun": "sample_heun", "dpmpp_2m": "sample_dpmpp_2m"}
STEPS = (1, 2, 3, 5, 14, 15, 16)  # 15: where dpmpp's lower_order_final stops


def decoupled(t: torch.Tensor) -> torch.Tensor:
    """Model times moved 20% into each gap (t_model[0] = t_steps[0]; the last one is never used)."""
    tm = t.clone()
    tm[1:-1] -= 0.2 * (t[1:-1] - t[2:])
    return tm


def version(schedule, solver: str, n: int, *, final: str = "zero", decouple: bool = False, model_time=None) -> dict:
    """A stored version (the raw export's fields) on logSNR-uniform step times."""
    t = HEURISTICS["logsnr"](schedule, n)
    tm = decoupled(t) if decouple else t
    return {"model_key": "m", "solver": solver, "nfe": SOLVERS[solver].nfe(n), "version": 1, "t_steps": t.tolist(),
            "t_model": tm.tolist(), "time_space": schedule.name, "sigmas": step_sigmas(schedule, t),
            "model_timesteps": (model_time or schedule.model_time)(tm).tolist(), "schedule_config": schedule.config(),
            "final": final, "source": "ld3"}


class MixtureModel:
    """The mixture's exact denoiser in k-diffusion's convention, model(x, sigma) -> x0, counting its calls:
    x = x0 + sigma eps (VE), or x = (1 - sigma) x0 + sigma eps for a flow schedule."""

    def __init__(self, flow: bool = False) -> None:
        self.flow, self.calls = flow, 0

    def __call__(self, x, sigma):
        self.calls += 1
        return MIXTURE.posterior_mean(x, 1 - sigma if self.flow else torch.ones_like(sigma), sigma)


def noise(n: int = 4, seed: int = 0, shape=(2,), dtype=DTYPE) -> torch.Tensor:
    return torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def ld3core_run(denoiser, v: dict, eps: torch.Tensor) -> torch.Tensor:
    """ld3core's solver on the version from eps * sigma(t_0), in k-diffusion's convention at its end."""
    sch, t, tm = denoiser.schedule, torch.tensor(v["t_steps"], dtype=DTYPE), torch.tensor(v["t_model"], dtype=DTYPE)
    out = SOLVERS[v["solver"]].ending(v["final"])(denoiser, eps * sch.sigma(t[0]).to(eps.dtype), t, tm)
    return out if v["final"] == "zero" else out / k_scale(sch, t[-1]).to(out.dtype)


# k-diffusion's samplers, where the model times are the step times.


@pytest.mark.parametrize("schedule", ["vp_discrete", "edm"])
@pytest.mark.parametrize("solver", list(K_SAMPLERS))
def test_equals_k_diffusions_sampler_and_callbacks_where_times_are_not_decoupled(schedule, solver):
    sample = getattr(kd("sampling"), K_SAMPLERS[solver])
    for n in STEPS:
        sampler = LD3Sampler(version(SCHEDULES[schedule](), solver, n))
        x, ours, theirs = noise(seed=n) * sampler.sigmas[0], MixtureModel(), MixtureModel()
        seen: dict[str, list] = {"ours": [], "theirs": []}
        out = sampler(ours, x, sampler.sigmas, callback=seen["ours"].append, disable=True)
        ref = sample(theirs, x, sampler.sigmas, callback=seen["theirs"].append, disable=True)
        assert ours.calls == theirs.calls == SOLVERS[solver].nfe(n)
        assert (out - ref).abs().max() < 1e-12, (n, (out - ref).abs().max())  # measured 2.4e-14 at most
        assert [c["i"] for c in seen["ours"]] == [c["i"] for c in seen["theirs"]] == list(range(n))
        for a, b in zip(seen["ours"], seen["theirs"]):
            assert a.keys() == b.keys() and float(a["sigma"]) == float(b["sigma"])
            for key in ("sigma_hat", "x", "denoised"):
                assert torch.allclose(torch.as_tensor(a[key]), torch.as_tensor(b[key]).expand_as(a[key]), rtol=1e-12, atol=1e-12)


def test_with_a_sigma_min_final_k_diffusion_corrects_the_last_step_where_ld3_does_not():
    """On sigmas ending at sigma(t_N) > 0 Euler agrees; k-diffusion's Heun adds a corrector to the last step
    (2N evaluations, ld3: Euler there, 2N - 1) and its 2M stays second order there (ld3's lower_order_final:
    first order for N < 15), so those two agree with a "sigma_min" version only for 2M with N >= 15."""
    s = kd("sampling")
    for n in STEPS:
        for solver in K_SAMPLERS:
            sampler = LD3Sampler(version(VPDiscrete.linear(), solver, n, final="sigma_min"))
            x, ours, theirs = noise(seed=n) * sampler.sigmas[0], MixtureModel(), MixtureModel()
            gap = (sampler(ours, x, sampler.sigmas, disable=True)
                   - getattr(s, K_SAMPLERS[solver])(theirs, x, sampler.sigmas, disable=True)).abs().max()
            same = solver == "euler" or (solver == "dpmpp_2m" and (n >= 15 or n == 1))
            assert (gap < 1e-12) == same, (solver, n, gap)
            assert theirs.calls == ours.calls + (solver == "heun")


@pytest.fixture(scope="module")
def digits():
    return load_model(read_catalog(MODELS)["ddpm-digits"], MODELS)


@pytest.mark.parametrize("solver", list(K_SAMPLERS))
def test_on_the_ddpm_digits_network_with_either_wrapper(digits, solver):
    """float32, as a pipeline runs it: equal to float32 rounding, with k-diffusion's wrapper and with ours. In
    k-diffusion's VE x the run starts at |x| ~ 500 (sigma 157), where float32's spacing is 6e-5."""
    sch = digits.schedule
    sampler = LD3Sampler(version(sch, solver, 4))
    x = noise(2, shape=(1, 16, 16), dtype=torch.float32) * sampler.sigmas[0].float()
    theirs = kd("external").DiscreteEpsDDPMDenoiser(digits.net, sch.alphas_cumprod.float(), quantize=False)
    ours = LD3Denoiser(digits.net, sampler.run, digits.prediction)
    sample = getattr(kd("sampling"), K_SAMPLERS[solver])
    with torch.no_grad():
        for model in (theirs, ours):
            gap = (sampler(model, x, sampler.sigmas, disable=True) - sample(model, x, sampler.sigmas.float(), disable=True))
            assert gap.abs().max() < 1e-4, (type(model).__name__, gap.abs().max())  # measured 2e-6 .. 2.4e-5


# Decoupled model times: ld3core's solvers, every family.


@pytest.mark.parametrize("schedule", list(SCHEDULES))
@pytest.mark.parametrize("final", ["zero", "sigma_min"])
def test_decoupled_runs_equal_ld3cores_solver_with_nfe_calls(schedule, final):
    sch = SCHEDULES[schedule]()
    for solver in FAMILIES:
        for n in (1, 2, 3, 5, 16):
            v = version(sch, solver, n, final=final, decouple=True)
            sampler, model, eps = LD3Sampler(v), MixtureModel(flow=schedule == "flow"), noise(seed=n)
            out = sampler(model, eps * sampler.sigmas[0], sampler.sigmas, disable=True)
            ref = ld3core_run(AnalyticDenoiser(MIXTURE, sch), v, eps)
            assert model.calls == v["nfe"], (solver, n)
            assert (out - ref).abs().max() < 1e-10, (solver, n, (out - ref).abs().max())  # measured 1.0e-13 at most (vp_linear)


@pytest.mark.parametrize("key", ["ddpm-digits", "digits-flow"])
def test_the_denoiser_runs_the_network_as_ld3core_does(key):
    """Decoupled times on the shipped networks: every family in float64, to float64 rounding; one in float32,
    to float32's. Measured on ddpm-digits: 1.4e-12 (float64), 2.6e-5 (float32, where ld3core's own run moves by
    2.3e-5 when its noise moves by 1e-7 relative); on digits-flow 0 in both (no rescaling of x there)."""
    loaded = load_model(read_catalog(MODELS)[key], MODELS)
    for dtype, families, tol in ((torch.float64, FAMILIES, 1e-10), (torch.float32, ("dpmpp_2m",), 1e-4)):
        loaded.module.to(dtype)
        eps = noise(1, shape=(1, 16, 16), dtype=dtype)
        for solver in families:
            for final in ("zero", "sigma_min"):
                v = version(loaded.schedule, solver, 3, final=final, decouple=True, model_time=loaded.model_time)
                sampler = LD3Sampler(v)
                model = LD3Denoiser(loaded.net, v, loaded.prediction, loaded.model_time)
                with torch.no_grad():
                    out = sampler(model, eps * sampler.sigmas[0].to(dtype), sampler.sigmas, disable=True)
                    ref = ld3core_run(loaded.denoiser, v, eps)
                assert (out - ref).abs().max() < tol, (dtype, solver, final, (out - ref).abs().max())


class Recording:
    """An eps network (the mixture's) that records the time inputs it is called with."""

    def __init__(self, schedule) -> None:
        self.schedule, self.inputs = schedule, []

    def __call__(self, x, model_time):
        self.inputs += model_time.tolist()
        t = (model_time.to(DTYPE) / self.schedule.n_train + self.schedule.t_min)[:, None]
        return (x - self.schedule.alpha(t) * MIXTURE.posterior_mean(x, self.schedule.alpha(t), self.schedule.sigma(t))) / self.schedule.sigma(t)


def test_the_denoiser_calls_the_network_at_the_stored_model_timesteps_where_k_diffusions_wrapper_misses_them():
    sch = VPDiscrete.linear()
    v = version(sch, "dpmpp_2m", 8, decouple=True)
    sampler = LD3Sampler(v)
    x = noise(1, dtype=torch.float32) * sampler.sigmas[0].float()  # one sample: one input per call
    ours, theirs = Recording(sch), Recording(sch)
    sampler(LD3Denoiser(ours, v, "eps"), x, sampler.sigmas, disable=True)  # sigmas in float32
    sampler(kd("external").DiscreteEpsDDPMDenoiser(theirs, sch.alphas_cumprod, quantize=False), x, sampler.sigmas, disable=True)
    stored = sampler.run.network_inputs()
    assert ours.inputs == torch.tensor(stored, dtype=torch.float32).tolist()  # exactly, as float32 network inputs
    miss = max(abs(a - b) for a, b in zip(theirs.inputs, stored))
    assert 5e-3 < miss < 5e-2, miss  # measured 0.019 training steps


def test_k_diffusions_discrete_wrapper_lands_off_ld3s_fractional_indices_as_documented():
    """The figures in LD3Denoiser's docstring (DDPM's linear betas)."""
    sch = VPDiscrete.linear()
    index = torch.linspace(0, 999, 99901, dtype=DTYPE)
    sigma = sch.edm_sigma(index / sch.n_train + sch.t_min)
    wrapper = kd("external").DiscreteEpsDDPMDenoiser(None, sch.alphas_cumprod, quantize=False)  # a float64 table
    miss = (wrapper.sigma_to_t(sigma) - index).abs()
    assert float(miss.max()) == pytest.approx(0.098, abs=1e-3)
    assert float(miss[index >= 10].max()) == pytest.approx(0.017, abs=1e-3)
    assert float(miss[index >= 100].max()) == pytest.approx(0.0022, abs=1e-4)
    assert float(miss[index >= 500].max()) == pytest.approx(1.06e-4, abs=1e-5)
    assert float(miss[index.frac() == 0].max()) < 1e-9
    wrapper = kd("external").DiscreteEpsDDPMDenoiser(None, sch.alphas_cumprod.float(), quantize=False)  # float32, as usual
    miss = (wrapper.sigma_to_t(sigma.float()).to(DTYPE) - index).abs()
    assert 1e-4 < float(miss[index.frac() == 0].max()) < 3e-4


def test_what_k_diffusions_wrapper_costs_on_ddpm_digits(digits):
    """Decoupled dpmpp_2m, 5 and 10 steps: the same sampler with k-diffusion's wrapper instead of LD3Denoiser."""
    sch = digits.schedule
    wrapper = kd("external").DiscreteEpsDDPMDenoiser(digits.net, sch.alphas_cumprod.float(), quantize=False)
    for n, (low, high) in ((5, (3e-5, 1e-3)), (10, (3e-5, 1e-3))):  # measured 1.3e-4 and 1.8e-4 on samples of |x| <= 2
        sampler = LD3Sampler(version(sch, "dpmpp_2m", n, decouple=True))
        x = noise(8, shape=(1, 16, 16), dtype=torch.float32) * sampler.sigmas[0].float()
        with torch.no_grad():
            exact = sampler(LD3Denoiser(digits.net, sampler.run, "eps"), x, sampler.sigmas, disable=True)
            near = sampler(wrapper, x, sampler.sigmas, disable=True)
        assert low < (exact - near).abs().max() < high


# Conventions and refusals.


@pytest.mark.parametrize("schedule", list(SCHEDULES))
def test_the_sigmas_are_the_versions_under_its_final_rule(schedule):
    sch = SCHEDULES[schedule]()
    zero, sigma_min = (version(sch, "dpmpp_2m", 5, final=f) for f in ("zero", "sigma_min"))
    assert LD3Sampler(zero).sigmas.tolist() == k_diffusion_sigmas(zero) == zero["sigmas"][:-1] + [0.0]
    assert LD3Sampler(sigma_min).sigmas.tolist() == sigma_min["sigmas"]
    # k-diffusion's x: x_t / alpha_t at the VE sigma, x_t itself at the flow sigma t.
    t = torch.tensor(zero["t_steps"], dtype=DTYPE)
    expected = torch.ones_like(t) if schedule == "flow" else sch.alpha(t)
    assert torch.equal(k_scale(sch, t), expected) and k_sigma(sch, t).tolist() == step_sigmas(sch, t)


def test_a_raw_export_is_a_version_and_the_other_export_forms_are_refused():
    v = version(EDM(), "euler", 3)
    assert torch.equal(LD3Sampler(export(v, "raw")).sigmas, LD3Sampler(v).sigmas)
    with pytest.raises(ValueError, match="format: a version or its 'raw' export is needed here .*, got a 'k-diffusion' export"):
        LD3Sampler(export(v, "k-diffusion"))


def test_a_list_of_sigmas_that_is_not_the_versions_is_refused():
    sampler = LD3Sampler(version(VPDiscrete.linear(), "euler", 5))
    model, x = MixtureModel(), noise() * sampler.sigmas[0]
    wrong = sampler.sigmas.clone()
    wrong[2] *= 1.001
    with pytest.raises(ValueError, match=r"sigmas\[2\] = .*, but this version's step 2 is at sigma .*; pass LD3Sampler.sigmas"):
        sampler(model, x, wrong)
    with pytest.raises(ValueError, match=r"sigmas: 5 values given; this version's euler run over 5 steps takes 6"):
        sampler(model, x, sampler.sigmas[1:])
    sampler(model, x, sampler.sigmas.float().tolist(), disable=True)  # a float32 copy is the version's
    assert model.calls == 5


def test_a_sigma_min_version_refuses_the_trailing_zero_of_the_export():
    v = version(VPDiscrete.linear(), "dpmpp_2m", 5, final="sigma_min")
    with pytest.raises(ValueError, match=r"sigmas\[5\] = 0, but this version was learned with final='sigma_min': its run ends at"):
        LD3Sampler(v)(MixtureModel(), noise(), k_diffusion_sigmas(v))


def test_the_denoiser_refuses_a_model_time_that_misses_the_stored_inputs():
    flow = RectifiedFlow()
    v = version(flow, "euler", 4, decouple=True, model_time=lambda t: 1000 * t)  # a diffusers flow model's input
    with pytest.raises(ValueError, match=r"model_time: gives 0.999 at t = 0.999, where the version's network input is 999.0"):
        LD3Denoiser(lambda x, t: x, v, "flow")
    LD3Denoiser(lambda x, t: x, v, "flow", model_time=lambda t: 1000 * t)
    with pytest.raises(ValueError, match="unknown prediction type 'noise'"):
        LD3Denoiser(lambda x, t: x, v, "noise")


def test_a_sigma_off_the_version_maps_through_the_schedule():
    sch = VPDiscrete.linear()
    net = Recording(sch)
    model = LD3Denoiser(net, version(sch, "euler", 3), "eps")
    sigma = sch.edm_sigma(torch.tensor([0.3, 0.05], dtype=DTYPE))
    model(noise(2), sigma)
    assert net.inputs == pytest.approx([(0.3 - sch.t_min) * 1000, (0.05 - sch.t_min) * 1000], rel=1e-6)
    with pytest.raises(ValueError, match="outside the vp_discrete schedule"):
        model(noise(1), torch.tensor([0.0]))


def test_gradients_flow_as_through_ld3cores_solver():
    sch = VPDiscrete.linear()
    v = version(sch, "unipc", 4, decouple=True)
    sampler = LD3Sampler(v)
    eps = noise().requires_grad_()
    sampler(MixtureModel(), eps * sampler.sigmas[0], sampler.sigmas, disable=True).square().sum().backward()
    ours, eps.grad = eps.grad, None
    ld3core_run(AnalyticDenoiser(MIXTURE, sch), v, eps).square().sum().backward()
    assert torch.allclose(ours, eps.grad, rtol=1e-9, atol=1e-12)


def test_the_progress_bar_counts_steps(capsys):
    sampler = LD3Sampler(version(EDM(), "heun", 4))
    sampler(MixtureModel(), noise() * sampler.sigmas[0], sampler.sigmas, disable=False)
    assert "4/4" in capsys.readouterr().err
    sampler(MixtureModel(), noise() * sampler.sigmas[0], sampler.sigmas, disable=True)
    assert capsys.readouterr().err == ""
