"""Apply a served schedule to a diffusers scheduler or pipeline, or give k-diffusion its sigmas.

``apply_schedule(scheduler_or_pipeline, schedule)`` calls ``set_timesteps`` with the argument
that scheduler class takes for the schedule's noise family:

- VP discrete: ``sigmas=`` (N+1 VE sigmas ending in 0) where the scheduler takes them as given
  (``EulerDiscreteScheduler``), else ``timesteps=`` (rounded integers: DPM-Solver++, Heun, DDPM);
- flow matching: ``sigmas=`` (the N flow times; plus ``timesteps=`` for decoupled times where the
  scheduler takes both) into a flow scheduler whose shift cannot warp them;
- EDM: ``EDMEulerScheduler`` with its karras formula, fed the ramp that reproduces the sigmas.

A schedule is learned for one solver and certified for it alone, so the scheduler must run that
solver (``scheduler_solvers``: by class and config, e.g. ``DPMSolverMultistepScheduler`` with
``algorithm_type="dpmsolver++"``, ``solver_order=2`` runs ``dpmpp_2m``); stochastic schedulers
(``DDPMScheduler``, ancestral and SDE samplers) and DPM-Solver singlestep run none of ours.
``allow_solver_mismatch=True`` applies the steps anyway, knowing that the result is not what the
version's quality figures describe.

Anything else raises ``ScheduleNotApplicable`` naming the scheduler class and the reason. A
pipeline calls ``set_timesteps(num_inference_steps)`` itself on every call, so for a pipeline
the scheduler is also *pinned*: later calls with ``num_inference_steps`` None or N get the
schedule, any other step count is refused.

A stock scheduler runs its own copy of the solver on what it can take of the schedule: the
export's ``caveats`` state what is lost (network times rounded to integers, decoupled times
dropped, another final step). ``client.diffusers_scheduler.LD3Scheduler`` runs the stored version
itself, through ld3core's solver, exactly (float32 rounding) in NFE network calls: use it where
the pipeline's scheduler may be replaced, and this module where a stock one must stay.

Nothing heavy is imported here: schedulers are duck-typed (their ``set_timesteps`` signature and
``config``); torch is imported only for ``EDMEulerScheduler``, which wants a tensor, numpy only
for flow schedulers, which do array arithmetic on the sigmas.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Mapping
from typing import Any

from registry.exports import export

RTOL = 1e-4  # float32 schedulers store our float64 values to about 1e-7; alphas_cumprod to about 1e-4
FLOW_WARPS = ("use_dynamic_shifting", "shift_terminal", "use_karras_sigmas", "use_exponential_sigmas",
              "use_beta_sigmas", "invert_sigmas")


class ScheduleNotApplicable(ValueError):
    """This scheduler cannot sample with this schedule; ``scheduler`` names its class."""

    def __init__(self, scheduler: str, reason: str) -> None:
        self.scheduler, self.reason = scheduler, reason
        super().__init__(f"{scheduler}: {reason}")


def apply_schedule(target: Any, schedule: Any, *, allow_solver_mismatch: bool = False) -> Any:
    """Set ``target``'s (a scheduler's or a pipeline's ``.scheduler``) steps to ``schedule``.

    ``schedule``: a version (mapping or row), a ``raw`` or ``diffusers`` export (dict or an object
    with ``format`` and ``payload``). Returns the scheduler. A scheduler that does not run the
    solver the schedule was learned for is refused unless ``allow_solver_mismatch`` is True, which
    applies the learned steps to that other solver: uncertified, usually worse than its own.
    """
    scheduler = target.scheduler if _is_pipeline(target) else target
    name = type(scheduler).__name__
    payload = _payload(schedule, "diffusers")
    errors: list[str] = []
    candidates = _candidates(scheduler, payload, errors)
    _check_nfe(scheduler, payload)
    if not allow_solver_mismatch:
        _check_solver(scheduler, payload)
    for kwargs in candidates:
        try:
            scheduler.set_timesteps(**kwargs)
        except ValueError as e:  # diffusers validates its own arguments: report why
            errors.append(f"set_timesteps({', '.join(kwargs)}=...) refused: {e}")
            continue
        _check_applied(scheduler, payload, kwargs)
        if scheduler is not target or _is_pinned(scheduler):
            _pin(scheduler, kwargs, payload["n_steps"])
        return scheduler
    raise ScheduleNotApplicable(name, "; ".join(errors))


def scheduler_solvers(scheduler: Any) -> tuple[tuple[str, ...], str]:
    """The ld3 solvers ``scheduler`` runs, from its class and config (duck-typed), and where it
    runs none, why. Only what was checked against ld3core is listed (README, "Equal to diffusers")."""
    name, cfg = type(scheduler).__name__, scheduler.config
    if name in STOCHASTIC:
        return (), f"samples stochastically ({STOCHASTIC[name]})"
    if name in ("EulerDiscreteScheduler", "EDMEulerScheduler", "DDIMScheduler"):
        return ("euler",), ""
    if name == "FlowMatchEulerDiscreteScheduler":
        if cfg.get("stochastic_sampling"):
            return (), "samples stochastically (stochastic_sampling=True re-noises every step)"
        return ("euler",), ""
    if name in ("HeunDiscreteScheduler", "FlowMatchHeunDiscreteScheduler"):
        return ("heun",), ""
    if name in ("DPMSolverMultistepScheduler", "EDMDPMSolverMultistepScheduler"):
        algorithm, order = cfg.get("algorithm_type", "dpmsolver++"), cfg.get("solver_order", 2)
        if algorithm != "dpmsolver++":
            kind = "stochastically" if "sde" in algorithm else "in noise prediction"
            return (), f"runs algorithm_type={algorithm!r}, which samples {kind}; ld3's DPM-Solver++ is 'dpmsolver++'"
        if order == 2 and cfg.get("solver_type", "midpoint") != "midpoint":
            return (), f"its solver_type={cfg['solver_type']!r} second-order update is not dpmpp_2m's ('midpoint')"
        runs = {1: ("euler",), 2: ("dpmpp_2m",), 3: ("dpmpp_3m",)}.get(order, ())
        return runs, "" if runs else f"runs DPM-Solver++ of order {order}"
    if name == "UniPCMultistepScheduler":
        order, variant = cfg.get("solver_order", 2), cfg.get("solver_type", "bh2")
        if not cfg.get("predict_x0", True) or order not in (2, 3) or variant not in ("bh1", "bh2"):
            return (), f"runs UniPC with predict_x0={cfg.get('predict_x0', True)}, solver_order={order}, solver_type={variant!r}"
        runs = (f"unipc_{variant}_{order}",)
        return runs + (("unipc",) if runs == ("unipc_bh2_3",) else ()), ""
    if name == "DPMSolverSinglestepScheduler":
        return (), "runs singlestep DPM-Solver, not a multistep solver of ld3's"
    return (), "runs no solver ld3 learns schedules for"


# Stochastic diffusers schedulers: a step draws fresh noise, so no ODE schedule is certified for them.
STOCHASTIC = {
    "DDPMScheduler": "ancestral sampling",
    "EulerAncestralDiscreteScheduler": "ancestral sampling",
    "KDPM2AncestralDiscreteScheduler": "ancestral sampling",
    "DPMSolverSDEScheduler": "an SDE solver",
    "LCMScheduler": "consistency sampling",
    "TCDScheduler": "consistency sampling",
    "CMStochasticIterativeScheduler": "consistency sampling",
}


def k_diffusion_sigmas(schedule: Any) -> list[float]:
    """The N+1 sigmas (last one 0) for k-diffusion's samplers, as a plain list of floats."""
    return list(_payload(schedule, "k-diffusion")["sigmas"])


# Reading what the caller passed.


def _get(obj: Any, key: str) -> Any:
    return obj.get(key) if isinstance(obj, Mapping) else getattr(obj, key, None)


def _payload(schedule: Any, fmt: str) -> dict[str, Any]:
    kind, payload = _get(schedule, "format"), _get(schedule, "payload")
    if kind is None or payload is None:  # a version
        return export(schedule, fmt)["payload"]
    if kind == fmt:
        return dict(payload)
    if kind == "raw":
        return export(payload, fmt)["payload"]
    raise ValueError(f"format: a {fmt!r} or 'raw' export is needed here, got a {kind!r} export")


def _is_pipeline(obj: Any) -> bool:
    return hasattr(obj, "scheduler") and not hasattr(obj, "set_timesteps")


def _params(scheduler: Any) -> set[str]:
    return set(inspect.signature(scheduler.set_timesteps).parameters)


def _kind(scheduler: Any) -> str:
    """'flow', 'edm', 'vp' or 'other', from the class name and config (duck-typed)."""
    cfg = scheduler.config
    if "FlowMatch" in type(scheduler).__name__ or cfg.get("use_flow_sigmas"):
        return "flow"
    if type(scheduler).__name__.startswith("EDM") or "sigma_data" in cfg:
        return "edm"
    return "vp" if hasattr(scheduler, "alphas_cumprod") else "other"


# Which argument for which scheduler.


def _check_nfe(scheduler: Any, p: Mapping[str, Any]) -> None:
    """Evaluations per step must agree: the schedule's NFE is what it was learned for."""
    n, nfe, learned, name = p["n_steps"], p["nfe"], p["evals_per_step"], type(scheduler).__name__
    order = getattr(scheduler, "order", 1)
    if order == learned:
        return
    if order == 2:
        raise ScheduleNotApplicable(name, f"evaluates the model twice per step: these {n} steps (learned for "
                                          f"{p['solver']} at NFE {nfe}) would cost {2 * n - 1} evaluations")
    raise ScheduleNotApplicable(name, f"evaluates the model {order} time(s) per step, but this schedule was learned for "
                                      f"{p['solver']}: {n} steps at NFE {nfe}, {learned} evaluations per step")


def _check_solver(scheduler: Any, p: Mapping[str, Any]) -> None:
    """The scheduler must run the solver the schedule was learned for (``scheduler_solvers``)."""
    runs, why = scheduler_solvers(scheduler)
    if p["solver"] in runs:
        return
    what = f"runs {' / '.join(runs)}" if runs else why
    raise ScheduleNotApplicable(type(scheduler).__name__, f"{what}, but this schedule was learned for {p['solver']} and is "
                                                          "certified only there; apply_schedule(..., allow_solver_mismatch=True) "
                                                          "applies its steps to this scheduler anyway, uncertified")


def _candidates(scheduler: Any, p: Mapping[str, Any], errors: list[str]) -> list[dict[str, Any]]:
    """The set_timesteps arguments to try, in order of preference; raises when none can fit."""
    name, kind, family, params = type(scheduler).__name__, _kind(scheduler), p["schedule"], _params(scheduler)
    want = {"vp_discrete": "vp", "flow": "flow", "edm": "edm"}.get(family)
    if want is None:
        raise ScheduleNotApplicable(name, f"no diffusers scheduler implements the continuous {family} schedule; "
                                          "use k_diffusion_sigmas with a sampler built for it")
    if kind != want:
        raise ScheduleNotApplicable(name, f"a {family} schedule needs a {_KIND_NAMES[want]} scheduler; this is a "
                                          f"{_KIND_NAMES[kind]} scheduler")
    if not params & {"sigmas", "timesteps"}:
        raise ScheduleNotApplicable(name, "set_timesteps accepts neither timesteps= nor sigmas=, so it cannot take a custom schedule")
    return {"vp": _vp, "flow": _flow, "edm": _edm}[kind](scheduler, p, params, errors)


_KIND_NAMES = {"vp": "discrete VP (alphas_cumprod)", "flow": "flow-matching", "edm": "EDM",
               "other": "non-VP, non-flow, non-EDM"}


def _vp(scheduler: Any, p: Mapping[str, Any], params: set[str], errors: list[str]) -> list[dict[str, Any]]:
    name, ac = type(scheduler).__name__, scheduler.alphas_cumprod
    if p.get("num_train_timesteps") and len(ac) != p["num_train_timesteps"]:
        raise ScheduleNotApplicable(name, f"has {len(ac)} training timesteps, the schedule's model {p['num_train_timesteps']}")
    if p.get("train_sigma_range"):
        ours = [math.sqrt((1.0 - float(a)) / float(a)) for a in (ac[0], ac[-1])]
        if not all(math.isclose(a, b, rel_tol=10 * RTOL) for a, b in zip(ours, p["train_sigma_range"])):
            raise ScheduleNotApplicable(name, f"its alphas_cumprod give training sigmas {ours[0]:.6g}..{ours[1]:.6g}, "
                                              f"the schedule's model {p['train_sigma_range'][0]:.6g}..{p['train_sigma_range'][1]:.6g}: "
                                              "another noise schedule (beta_schedule?)")
    out = []
    if "sigmas" in params:
        out.append({"sigmas": list(p["sigmas"])})
    if "timesteps" in params:
        ts = list(p["timesteps"])
        dups = [t for t, u in zip(ts, ts[1:]) if t == u]
        if dups:
            errors.append(f"timesteps= needs distinct integers, but rounding the learned times repeats {dups}")
        else:
            out.append({"timesteps": ts})
    return out


def _flow(scheduler: Any, p: Mapping[str, Any], params: set[str], errors: list[str]) -> list[dict[str, Any]]:
    name, cfg = type(scheduler).__name__, scheduler.config
    for key in ("shift", "flow_shift"):
        if cfg.get(key, 1.0) != 1.0:
            raise ScheduleNotApplicable(name, f"config {key}={cfg[key]} would warp the learned flow times; use {key}=1.0")
    warps = [key for key in FLOW_WARPS if cfg.get(key)]
    if warps:
        raise ScheduleNotApplicable(name, f"config {', '.join(f'{k}={cfg[k]!r}' for k in warps)} would transform the "
                                          "learned flow times; turn it off")
    if "sigmas" not in params:
        raise ScheduleNotApplicable(name, "set_timesteps takes no sigmas=, so it cannot take flow times")
    import numpy as np  # UniPC/DPM-Solver flow sigmas: set_timesteps does array arithmetic on them

    kwargs = {"sigmas": np.array(p["sigmas"], dtype=np.float64)}
    n_train = cfg.get("num_train_timesteps", 1000)
    if "timesteps" in params and any(not math.isclose(t, s * n_train, rel_tol=1e-9) for t, s in zip(p["timesteps"], p["sigmas"])):
        kwargs["timesteps"] = list(p["timesteps"])  # decoupled network times
    return [kwargs]


def _edm(scheduler: Any, p: Mapping[str, Any], params: set[str], errors: list[str]) -> list[dict[str, Any]]:
    name, cfg = type(scheduler).__name__, scheduler.config
    if "sigmas" not in params:
        raise ScheduleNotApplicable(name, "set_timesteps takes no sigmas=, so it cannot take a custom schedule")
    if cfg.get("sigma_schedule") != "karras":
        raise ScheduleNotApplicable(name, f"with sigma_schedule={cfg.get('sigma_schedule')!r} set_timesteps ignores "
                                          "custom sigma values; use sigma_schedule='karras'")
    # EDMEulerScheduler maps its `sigmas` argument through the karras formula as a ramp in [0, 1]: invert it.
    import torch

    lo, hi, rho = cfg["sigma_min"] ** (1 / cfg["rho"]), cfg["sigma_max"] ** (1 / cfg["rho"]), cfg["rho"]
    ramp = [(s ** (1 / rho) - hi) / (lo - hi) for s in p["sigmas"][:-1]]
    return [{"sigmas": torch.tensor(ramp, dtype=torch.float64)}]


def _check_applied(scheduler: Any, p: Mapping[str, Any], kwargs: Mapping[str, Any]) -> None:
    """The scheduler's first step must be ours: catches a scheduler that took the argument and transformed it."""
    name = type(scheduler).__name__
    if "timesteps" in kwargs and p["schedule"] == "vp_discrete":
        got, want = float(scheduler.timesteps[0]), float(kwargs["timesteps"][0])
    else:
        got, want = float(scheduler.sigmas[0]), float(p["sigmas"][0])
    if not math.isclose(got, want, rel_tol=RTOL):
        raise ScheduleNotApplicable(name, f"set_timesteps({', '.join(kwargs)}=...) gave a first step of {got:.6g}, "
                                          f"not the schedule's {want:.6g}: the scheduler transforms custom values")


def _is_pinned(scheduler: Any) -> bool:
    return getattr(scheduler.set_timesteps, "_ld3_pinned", False)


def _pin(scheduler: Any, kwargs: Mapping[str, Any], n_steps: int) -> None:
    """Make the scheduler's own ``set_timesteps(num_inference_steps)`` (as pipelines call it) apply ``kwargs``."""
    original = scheduler.set_timesteps.__wrapped__ if _is_pinned(scheduler) else scheduler.set_timesteps
    name = type(scheduler).__name__

    @functools.wraps(original)
    def set_timesteps(num_inference_steps: int | None = None, device: Any = None, **kw: Any) -> Any:
        if kw.get("timesteps") is not None or kw.get("sigmas") is not None:  # the caller's own custom schedule
            return original(num_inference_steps, device=device, **kw)
        if num_inference_steps not in (None, n_steps):
            raise ScheduleNotApplicable(name, f"pinned by apply_schedule to the learned {n_steps}-step schedule, but "
                                              f"{num_inference_steps} steps were asked for: call with num_inference_steps={n_steps}")
        return original(device=device, **{**kw, **kwargs})

    set_timesteps._ld3_pinned = True
    scheduler.set_timesteps = set_timesteps
