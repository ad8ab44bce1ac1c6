import math
import subprocess
import sys
from dataclasses import fields
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from registry.schemas import ApiKeyCreate, JobCreate, JobOptions, ModelCreate, ScheduleVersionCreate


def errors(exc: ValidationError) -> list[tuple[tuple, str]]:
    return [(e["loc"], e["msg"]) for e in exc.errors()]


def only_error(cls, **body) -> tuple[tuple, str]:
    with pytest.raises(ValidationError) as e:
        cls(**body)
    (err,) = errors(e.value)
    return err


def test_job_create_defaults():
    job = JobCreate(model="ddpm-digits", solver="heun", nfe=3)
    assert job.options == JobOptions()
    assert job.options.teacher_nfe == 20 and job.options.loss == "lpips" and job.options.restore is True


def test_the_schemas_import_no_torch():
    code = "import sys, registry.schemas; assert 'torch' not in sys.modules, sorted(m for m in sys.modules if 'ld3core' in m)"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_unknown_solver_lists_known_ones():
    loc, msg = only_error(JobCreate, model="m", solver="rk4", nfe=5)
    assert loc == ("solver",)
    assert "unknown solver 'rk4'" in msg and "dpmpp_2m" in msg and "unipc" in msg


@pytest.mark.parametrize("solver,nfe,needle", [
    ("heun", 2, "heun needs an NFE between 3 and 100"), ("euler", 1, "euler needs an NFE between 2"),
    ("unipc", 101, "less than or equal to 100"),
])
def test_nfe_out_of_range_for_solver(solver, nfe, needle):
    loc, msg = only_error(JobCreate, model="m", solver=solver, nfe=nfe)
    assert loc == ("nfe",)
    assert needle in msg


def test_unknown_option_is_named():
    loc, msg = only_error(JobCreate, model="m", solver="euler", nfe=4, options={"learning_rate": 1})
    assert loc == ("options", "learning_rate") and "Extra inputs" in msg


def test_bad_model_key():
    loc, _ = only_error(JobCreate, model="../etc", solver="euler", nfe=4)
    assert loc == ("model",)


@pytest.mark.parametrize("options,field,needle", [
    ({"teacher_solver": "rk4"}, "teacher_solver", "known"),
    ({"teacher_heuristic": "cosine"}, "teacher_heuristic", "known: time_uniform"),
    ({"batch_size": 8, "n_train": 4}, "n_train", "batch_size=8"),
    ({"heuristics": ["edm"], "starts": 2}, "starts", "only 1 heuristics"),
    ({"heuristics": ["edm", "edm"]}, "heuristics", "duplicate"),
    ({"phase1_epochs": 0, "phase2_epochs": 0}, "phase2_epochs", "at least one epoch"),
    ({"loss": "ssim"}, "loss", "lpips"),
    ({"factor": 1.0}, "factor", "less than 1"),
    ({"guidance": float("nan")}, "guidance", "finite"),
    ({"class_labels": [-1]}, "class_labels", "greater than or equal to 0"),
    ({"prompts": ["  "]}, "prompts", "at least 1 character"),
    ({"seed": 2**31}, "seed", "less than or equal"),
    ({"init": "cosine"}, "init", "one of the job's heuristics"),
    ({"heuristics": ["edm"], "starts": 1, "init": "logsnr"}, "init", "['edm']"),
])
def test_options_errors_name_field_and_reason(options, field, needle):
    with pytest.raises(ValidationError) as e:
        JobOptions(**options)
    (loc, msg), = errors(e.value)
    assert loc[0] == field and needle in msg, (loc, msg)


def test_class_labels_and_prompts_exclusive():
    with pytest.raises(ValidationError, match="class_labels and prompts"):
        JobOptions(class_labels=[1], prompts=["a cat"])


def config_fields() -> dict[str, tuple[type, Any]]:
    """Every field of ld3core's LD3Config, TeacherSpec and JobConfig, by the name a job's options give it:
    (its dataclass, its field). LD3Config's solver and nfe are the job's key, given beside the options."""
    from ld3core.config import JobConfig, LD3Config, TeacherSpec

    out = {f.name: (LD3Config, f) for f in fields(LD3Config) if f.name not in ("solver", "nfe")}
    out.update({f"teacher_{f.name}": (TeacherSpec, f) for f in fields(TeacherSpec)})
    out.update({"eval_batch_size" if f.name == "batch_size" else f.name: (JobConfig, f)
                for f in fields(JobConfig) if f.name not in ("ld3", "teacher")})
    return out


def test_every_config_field_is_an_api_option_with_one_default():
    """Each field of LD3Config, TeacherSpec and JobConfig is an option of POST /jobs, whose default is the
    dataclass's own (None where the pixel and latent recipes differ: the worker picks the model's)."""
    from ld3core.config import LATENT_RECIPE, JobConfig, LD3Config, job_config

    api, expected = JobOptions.model_fields, config_fields()
    assert not set(expected) - set(api), f"fields no option reaches: {sorted(set(expected) - set(api))}"
    assert set(api) - set(expected) == {"guidance", "class_labels", "prompts"}  # the model's conditioning
    for name, (cls, f) in expected.items():
        default = api[name].get_default(call_default_factory=True)
        if cls is LD3Config and f.name in LATENT_RECIPE:
            assert default is None, name
        else:
            assert default == (list(f.default) if isinstance(f.default, tuple) else f.default), name
    # The API's defaults build the dataclasses' own job, for pixel and latent models alike.
    defaults = JobOptions().ld3_options()
    assert job_config("unipc", 5, defaults) == JobConfig(ld3=LD3Config(solver="unipc", nfe=5))
    assert job_config("heun", 5, defaults, latent=True) == JobConfig(ld3=LD3Config.latent(solver="heun", nfe=5))
    set_by_user = JobOptions(lr_xi=0.02, seed=7, teacher_nfe=30, eval_batch_size=8).ld3_options()
    cfg = job_config("euler", 4, set_by_user, latent=True)
    assert (cfg.ld3.lr_xi, cfg.ld3.seed, cfg.teacher.nfe, cfg.batch_size) == (0.02, 7, 30, 8)
    assert cfg.ld3.lr_xic == LD3Config.latent().lr_xic


def test_a_job_over_http_and_ld3_optimize_get_the_same_config():
    from ld3cli.main import parser
    from ld3cli.optimize import job_config as cli_job_config
    from ld3core.config import job_config

    for flags, options in (([], {}), (["--n-train", "8", "--no-restore", "--heuristics", "edm", "logsnr", "--starts", "2"],
                                      {"n_train": 8, "restore": False, "heuristics": ["edm", "logsnr"], "starts": 2})):
        args = parser().parse_args(["optimize", "--solver", "heun", "--nfe", "5", "--loss", "l1", *flags])
        api = JobCreate(model="m", solver="heun", nfe=5, options={"loss": "l1", **options}).options.ld3_options()
        assert cli_job_config(args, default_loss="l2") == job_config("heun", 5, api), flags


def version_body(**kw):
    body = dict(model_key="gmm", solver="heun", nfe=5, t_steps=[80.0, 10.0, 1.0, 0.002], t_model=[80.0, 9.0, 1.1, 0.002],
                time_space="edm sigma", sigmas=[80.0, 10.0, 1.0, 0.002], model_timesteps=[80.0, 10.0, 1.0, 0.002],
                schedule_config={"name": "edm"}, source="ld3", config={}, seed=0, code_version="abc", quality={})
    return {**body, **kw}


def test_schedule_version_create_lengths_and_order():
    ScheduleVersionCreate(**version_body())  # heun at NFE 5: 3 steps, 4 values
    with pytest.raises(ValidationError, match=r"sigmas: heun at NFE 5 takes 3 steps, so 4 values; got 3"):
        ScheduleVersionCreate(**version_body(sigmas=[80.0, 1.0, 0.002]))
    with pytest.raises(ValidationError, match="t_steps: must strictly decrease"):
        ScheduleVersionCreate(**version_body(t_steps=[80.0, 1.0, 10.0, 0.002]))
    with pytest.raises(ValidationError) as e:
        ScheduleVersionCreate(**version_body(t_model=[80.0, float("inf"), 1.0, 0.002]))
    assert errors(e.value)[0][0] == ("t_model", 1)


def test_model_create_uses_catalog_rules(analytic_spec):
    assert ModelCreate(**analytic_spec).spec_dict()["sample_shape"] == [2]
    with pytest.raises(ValidationError, match="sha256"):
        ModelCreate(**{**analytic_spec, "format": "diffusers", "location": "x", "schedule": "from_scheduler_config",
                       "prediction": "from_scheduler_config"})
    with pytest.raises(ValidationError) as e:
        ModelCreate(**{**analytic_spec, "format": "onnx"})
    assert errors(e.value)[0][0] == ("format",)


def test_api_key_scopes():
    assert ApiKeyCreate(name="ci", scopes=["jobs:submit"]).scopes == ["jobs:submit"]
    loc, _ = only_error(ApiKeyCreate, name="ci", scopes=["root"])
    assert loc[0] == "scopes"
    loc, msg = only_error(ApiKeyCreate, name="ci", scopes=["admin", "admin"])
    assert loc == ("scopes",) and "duplicate" in msg


def test_api_key_name_refuses_a_nul_character_and_keeps_its_length_rules():
    assert only_error(ApiKeyCreate, name="ci\x00", scopes=["admin"]) == (("name",), "Value error, must not contain a NUL character")
    loc, msg = only_error(ApiKeyCreate, name="x" * 101, scopes=["admin"])
    assert loc == ("name",) and msg == "String should have at most 100 characters"


def numeric_options() -> dict[str, tuple[str, float, float, bool, bool]]:
    """Every numeric JobOptions field: (type, low, high, low excluded, high excluded), as the API documents them."""
    out = {}
    for name, prop in JobOptions.model_json_schema()["properties"].items():
        kinds = [p for p in prop.get("anyOf", [prop]) if p.get("type") in ("integer", "number")]
        if kinds:
            (k,) = kinds
            low, high = k.get("minimum", k.get("exclusiveMinimum")), k.get("maximum", k.get("exclusiveMaximum"))
            out[name] = (k["type"], low, high, "exclusiveMinimum" in k, "exclusiveMaximum" in k)
    return out


# Fields whose edge values need a companion to stay consistent (n_train >= batch_size).
COMPANIONS = {"n_train": {"batch_size": 1}, "batch_size": {"n_train": 10_000}}


def test_every_numeric_option_has_finite_documented_bounds():
    bounds = numeric_options()
    assert {"lr_x", "lr_xi", "lr_xic", "gamma", "clip", "guard_z", "patience", "val_every", "momentum"} <= set(bounds)
    for name, (_, low, high, _, _) in bounds.items():
        assert low is not None and high is not None and math.isfinite(high), name


def _inside(kind: str, low: float, high: float, low_open: bool, high_open: bool) -> st.SearchStrategy:
    if kind == "integer":
        return st.integers(int(low) + low_open, int(high) - high_open)
    return st.floats(low, high, exclude_min=low_open, exclude_max=high_open, allow_nan=False)


@pytest.mark.parametrize("name", sorted(numeric_options()))
@settings(max_examples=25, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_every_value_accepted_for_an_option_builds_a_job_config(name, data):
    """Property: what JobOptions accepts, ld3core's JobConfig (pixel and latent recipes) accepts too."""
    from ld3core.config import job_config

    kind, low, high, low_open, high_open = numeric_options()[name]
    edges = [v for v, open_ in ((low, low_open), (high, high_open)) if not open_]
    value = data.draw(st.sampled_from(edges) | _inside(kind, low, high, low_open, high_open) if edges
                      else _inside(kind, low, high, low_open, high_open))
    options = JobOptions(**{**COMPANIONS.get(name, {}), name: value})
    for latent in (False, True):
        job_config("heun", 3, options.ld3_options(), latent=latent)


@pytest.mark.parametrize("name", sorted(numeric_options()))
def test_a_value_past_a_bound_is_refused_naming_the_option(name):
    kind, low, high, low_open, high_open = numeric_options()[name]
    step = 1 if kind == "integer" else 0
    below = low if low_open else (low - 1 if step else math.nextafter(low, -math.inf))
    above = high if high_open else (high + 1 if step else math.nextafter(high, math.inf))
    for bad in (below, above, 1e308, math.inf, -math.inf, math.nan):
        with pytest.raises(ValidationError) as e:
            JobOptions(**{**COMPANIONS.get(name, {}), name: bad})
        assert {err["loc"][0] for err in e.value.errors()} == {name}, (name, bad)


@pytest.mark.parametrize("model", ["gmm2d-edm", "gmm64-vpdiscrete"])
def test_a_job_at_the_largest_learning_rates_gamma_and_clip_stays_finite(model):
    """The upper bounds keep the arithmetic finite: a short LD3 run at all of them learns finite times."""
    import torch

    from ld3core.config import job_config
    from ld3core.losses import make_loss
    from ld3core.models import load_builtin
    from ld3core.optimize import run_job

    largest = {name: high for name, (_, _, high, _, _) in numeric_options().items()
               if name in ("lr_x", "lr_xi", "lr_xic", "min_lr_xi", "min_lr_xic", "gamma", "clip", "guard_z")}
    options = JobOptions(loss="l2", teacher_solver="euler", teacher_nfe=10, n_train=4, n_val=2, n_test=2, starts=1,
                         phase1_epochs=1, phase2_epochs=1, remat=False, val_every=1, momentum=math.nextafter(1, 0),
                         **largest)
    builtin = load_builtin(model)
    res = run_job(builtin.denoiser, builtin.sample_shape, job_config("euler", 2, options.ld3_options()), make_loss("l2"))
    for t in (res.learned_t_steps, res.learned_t_model, res.t_steps):
        assert bool(torch.isfinite(t).all()), t
