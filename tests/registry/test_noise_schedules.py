"""registry.noise_schedules mirrors ld3core.schedules without torch: these tests hold the two together."""

import dataclasses
import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from registry import noise_schedules
from registry.noise_schedules import check_schedule_config


def test_names_parameters_and_defaults_are_ld3cores():
    from ld3core.schedules import SCHEDULES

    assert set(noise_schedules.NAMES) == set(SCHEDULES)
    for name, cls in SCHEDULES.items():
        fields = [f for f in dataclasses.fields(cls) if f.init]
        assert noise_schedules.PARAMETERS[name] == tuple(f.name for f in fields), name
        if name != "vp_discrete":
            assert noise_schedules.DEFAULTS[name] == {f.name: f.default for f in fields}, name
            assert check_schedule_config(cls().config())


@pytest.mark.parametrize("cfg, needle", [
    ({"name": "karras"}, "unknown noise schedule"),
    ({"name": "edm", "sigma_max": 80.0}, "takes ['T', 't_min']"),
    ({"name": "edm", "T": "80"}, "finite number"),
    ({"name": "edm", "T": True}, "finite number"),
    ({"name": "edm", "T": math.inf}, "finite number"),
    ({"name": "edm", "T": 1e6}, "T <= 100000"),
    ({"name": "edm", "t_min": 0.0}, "0 < t_min < T"),
    ({"name": "flow", "T": 1.0}, "T < 1"),
    ({"name": "vp_cosine", "T": 1.0}, "T < 1"),
    ({"name": "vp_cosine", "s": -0.1}, "s >= 0"),
    ({"name": "vp_linear", "beta_min": 5.0, "beta_max": 5.0}, "beta_min < beta_max"),
    ({"name": "vp_linear", "t_min": 1e-300, "beta_min": 0.0}, "log-SNR must be finite"),
    ({"name": "vp_discrete"}, "alphas_cumprod"),
    ({"name": "vp_discrete", "alphas_cumprod": [0.5]}, "2 to 100000"),
    ({"name": "vp_discrete", "alphas_cumprod": [0.9, 1.0]}, "strictly decreasing values in (0, 1)"),
    ({"name": "vp_discrete", "alphas_cumprod": [0.9, "x"]}, "finite number"),
])
def test_refusals_say_why(cfg, needle):
    with pytest.raises(ValueError) as e:
        check_schedule_config(cfg)
    assert needle in str(e.value)


@st.composite
def continuous_configs(draw: st.DrawFn) -> dict:
    """Configs of the continuous schedules around and past their edges (t_min < T mostly; tiny, huge values)."""
    name = draw(st.sampled_from(["vp_linear", "vp_cosine", "edm", "flow"]))
    T = draw(st.floats(1e-300, 1.0, exclude_max=True) if name in ("vp_cosine", "flow") else st.floats(1e-300, 2e5))
    cfg = {"name": name, "T": T, "t_min": T * draw(st.floats(1e-300, 1.0, exclude_max=True))}
    if name == "vp_linear":
        beta_min = draw(st.floats(0, 1e4))
        cfg |= {"beta_min": beta_min, "beta_max": beta_min + draw(st.floats(1e-300, 1e6))}
    if name == "vp_cosine":
        cfg["s"] = draw(st.floats(0, 1e3))
    return cfg


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(cfg=continuous_configs())
def test_every_config_accepted_is_rebuilt_by_ld3core_with_finite_log_snrs(cfg):
    """Property: what the API accepts, the worker rebuilds, and its log-SNR is finite on [t_min, T] as ours says."""
    import torch

    from ld3core.schedules import schedule_from_config

    try:
        check_schedule_config(cfg)
    except ValueError:
        assume(False)
    name, t_min, T = cfg["name"], cfg["t_min"], cfg["T"]
    schedule = schedule_from_config(cfg)
    for t in (t_min, T, (t_min + T) / 2):
        lam = float(schedule.lam(torch.tensor(t, dtype=torch.float64)))
        assert math.isfinite(lam), (cfg, t)
        assert lam == pytest.approx(noise_schedules.log_snr(name, {**noise_schedules.DEFAULTS[name], **cfg}, t),
                                    rel=1e-9, abs=1e-9), (cfg, t)
    assert math.isfinite(schedule.sigma_T)


def test_an_accepted_vp_discrete_config_is_rebuilt():
    from ld3core.schedules import VPDiscrete, schedule_from_config

    cfg = VPDiscrete.linear(50).config()
    assert check_schedule_config(cfg) is cfg
    assert math.isfinite(schedule_from_config(cfg).sigma_T)


def test_imports_no_torch():
    import subprocess
    import sys

    code = "import sys, registry.noise_schedules; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
