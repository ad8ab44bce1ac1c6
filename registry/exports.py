"""Format a stored schedule version for the tools that sample with it (pure: no torch, no DB).

A version holds N+1 step times ``t_steps`` (t_0 = T ... t_N = t_min), the ``final`` rule of
its last step (``config.ld3.final``: "sigma_min" ends at t_N, "zero" lands on the data prediction
at sigma = 0 instead; versions from before the rule are "sigma_min"), and the network's
times ``t_model`` in its schedule's own time (``time_space``), plus two columns the worker
computes: ``sigmas`` = the noise level a sigma-driven sampler uses at each step time
(diffusion schedules: sigma_t / alpha_t, the k-diffusion / VE sigma; rectified flow: sigma_t = t,
the flow sigma in [0, 1] that diffusers and ComfyUI use; see ``worker.version.step_sigmas``) and
``model_timesteps`` = the value the network is called with at each ``t_model``
(VP discrete: the fractional training index k of t = (k + 1) / n_train; flow: t * 1000).
This module only selects, rounds and annotates those lists; every loss of information is
stated in the export's ``caveats``.

Formats:
- ``raw``: the stored fields, unchanged (re-exportable).
- ``diffusers``: ``timesteps`` for ``set_timesteps(timesteps=...)`` (VP discrete: integers) and
  ``sigmas`` for ``set_timesteps(sigmas=...)`` (VE sigmas, N+1 with a trailing 0, as
  ``EulerDiscreteScheduler`` takes them; flow: the N flow sigmas, to which flow-matching
  schedulers append 0 themselves).
- ``k-diffusion``: N+1 sigmas ending in 0, the samplers' ``sigmas`` argument.
- ``comfyui``: the same N+1 sigmas, and as ``sigmas_text`` for ComfyUI's ``ManualSigmas`` node:
  plain decimals (that node reads numbers with the pattern ``[-+]?(?:\\d*\\.*\\d+)``, so
  ``1e-05`` would become 1 and -5), 9 significant digits (float32 round trip).

Every payload names ``final``; where the consumer's last step differs from it, a caveat says so.
Every payload also says whether it is ``exact`` for its consumer (``FORMAT_CONSUMER``:
raw is ours, which runs anything stored), and where it is not, the first caveat gives the
approximation's cost the job measured (``quality.consumers``, ``ld3core.optimize.consumer_costs``:
the test loss of the form that consumer runs next to the certified one). Versions from before
that measure say "not measured".
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from ld3core.config import OPTIONS

from .solvers import EVALS_PER_STEP, FINALS

GUARD_Z = OPTIONS["guard_z"].default  # for versions whose config does not say
# The consumer (ld3core.config.CONSUMERS) each format is for.
FORMAT_CONSUMER = {"raw": "ld3", "diffusers": "diffusers", "k-diffusion": "k-diffusion", "comfyui": "comfyui"}

FORMATS = ("raw", "diffusers", "k-diffusion", "comfyui")
FIELDS = ("model_key", "solver", "nfe", "guidance", "version", "t_steps", "t_model", "time_space",
          "sigmas", "model_timesteps", "schedule_config", "source", "final", "consumers")
REQUIRED = ("solver", "nfe", "t_steps", "t_model", "sigmas", "model_timesteps")
CONTINUOUS_VP = ("vp_linear", "vp_cosine")
# Tolerance on "t_model equals t_steps" (times are float64 in ld3core, JSON round-trips exactly).
SAME_TIME_RTOL = 1e-9


def export(version: Any, fmt: str) -> dict[str, Any]:
    """``{format, version, payload, caveats}`` for ``fmt`` in ``FORMATS``.

    ``version`` is a mapping (a ``raw`` payload, a schema's ``model_dump()``) or an object
    with the same attributes (a ``ScheduleVersionRow``). Raises ``ValueError`` naming the
    field and the reason for an unknown format or an inconsistent version.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format: unknown export format {fmt!r}; known: {', '.join(FORMATS)}")
    v = _read(version)
    payload, caveats = _EXPORTERS[fmt](v)
    exact, cost = _delivery(v, FORMAT_CONSUMER[fmt])
    payload["exact"] = exact
    return {"format": fmt, "version": v["version"], "payload": payload, "caveats": ([] if exact else [cost]) + caveats}


def _delivery(v: Mapping[str, Any], consumer: str) -> tuple[bool, str]:
    """Whether ``consumer`` runs the version exactly as certified, and if not, the cost as measured."""
    if consumer == "ld3":
        return True, ""
    measured = (v.get("consumers") or {}).get(consumer)
    if measured is None:
        return False, (f"not exact for {consumer}, cost not measured (a version from before the job measured each "
                       "consumer's form); see the caveats below")
    if measured["exact"]:
        return True, ""
    if not measured["runs"]:
        return False, f"not exact: {consumer} does not run {v['solver']} as ld3 learned it"
    cert, test, cost = v.get("certified"), measured["test"]["mean"], measured["cost"]
    figures = f"test loss {test:.5g}" + (f" vs {cert:.5g} certified" if cert is not None else "")
    text = (f"not exact for {consumer}: the form it runs (no decoupled times, its own last step, rounded "
            f"timesteps where it rounds) was measured by the job: {figures}, a paired cost of "
            f"{cost['mean']:+.3g} ± {cost['sem']:.2g} (sem; > 0 is worse)")
    worse, z = measured.get("minus_best"), v["guard_z"]
    if worse is not None and worse["mean"] + z * worse["sem"] > 0:  # the guard's one-sided test, for this form
        verdict = "WORSE than" if worse["mean"] > 0 else "not shown better than"
        text += (f"; in that form {verdict} the best heuristic ({v['best_heuristic'] or 'heuristic'}): difference "
                 f"{worse['mean']:+.3g} ± {worse['sem']:.2g} (one-sided at z = {z:g}); learn for this consumer "
                 f"(job option target={consumer!r}) or use the heuristic")
    return False, text


def schedule_family(v: Mapping[str, Any]) -> str:
    """The noise-schedule name (``vp_discrete``, ``edm``, ``flow``, ...) of a version."""
    name = (v.get("schedule_config") or {}).get("name")
    if not name and v.get("time_space"):
        name = str(v["time_space"]).split()[0]
    if not name:
        raise ValueError("schedule_config: the version names no noise schedule (schedule_config.name or time_space)")
    return name


def final_rule(final: Any, config: Any) -> str:
    """The version's final-step rule: ``final`` (a raw export's field), else its training config's
    ``ld3.final``, else "sigma_min" (every version learned before the rule existed)."""
    if final is None:
        final = ((config or {}).get("ld3") or {}).get("final", "sigma_min") if isinstance(config, Mapping) else "sigma_min"
    if final not in FINALS:
        raise ValueError(f"final: unknown final step {final!r}; known: {', '.join(FINALS)}")
    return final


def decimal_text(x: float, digits: int = 9) -> str:
    """``x`` to ``digits`` significant digits in plain decimal notation, never an exponent."""
    return format(Decimal(f"{x:.{digits}g}"), "f")


def round_timesteps(values: Sequence[float]) -> tuple[list[int], list[tuple[int, int, int]]]:
    """Nearest integers (halves up) and the (i, j, value) pairs that rounding made equal."""
    ints = [math.floor(x + 0.5) for x in values]
    dups = [(i, i + 1, a) for i, (a, b) in enumerate(zip(ints, ints[1:])) if a == b]
    return ints, dups


# Reading and checking a version.


def _read(version: Any) -> dict[str, Any]:
    get = version.get if isinstance(version, Mapping) else lambda k, d=None: getattr(version, k, d)
    v = {k: get(k, None) for k in FIELDS}
    for k in REQUIRED:
        if v[k] is None:
            raise ValueError(f"{k}: missing from the schedule version")
    n1 = len(v["t_steps"])
    if n1 < 2:
        raise ValueError(f"t_steps: needs at least 2 times (one step), got {n1}")
    for k in ("t_model", "sigmas", "model_timesteps"):
        if len(v[k]) != n1:
            raise ValueError(f"{k}: has {len(v[k])} values, t_steps has {n1}")
    for k in ("t_steps", "sigmas"):
        xs = [float(x) for x in v[k]]
        if not all(math.isfinite(x) and x > 0 for x in xs) or any(b >= a for a, b in zip(xs, xs[1:])):
            raise ValueError(f"{k}: must be positive, finite and strictly decreasing, got {xs}")
    evals_per_step(v)  # a known solver
    v["final"] = final_rule(v["final"], get("config", None))
    quality = get("quality", None) or {}
    v["consumers"] = v.get("consumers") or (quality.get("consumers") if isinstance(quality, Mapping) else None)
    served = (quality.get("learned") if quality.get("source") == "ld3" else quality.get("best_heuristic")) if isinstance(quality, Mapping) else None
    v["certified"] = served.get("mean") if isinstance(served, Mapping) else None  # the served schedule's test loss
    best = quality.get("best_heuristic") if isinstance(quality, Mapping) else None
    v["best_heuristic"] = best.get("name") if isinstance(best, Mapping) else None
    config = get("config", None)
    job = config.get("guard_z") if isinstance(config, Mapping) else None
    v["guard_z"] = float(job) if job is not None else GUARD_Z
    v["family"] = schedule_family(v)
    _check_sigma_convention(v)
    return v


def _check_sigma_convention(v: Mapping[str, Any]) -> None:
    """EDM (sigma = t) and flow (sigma = t): the stored sigmas must be the step times."""
    if v["family"] not in ("edm", "flow"):
        return
    for i, (t, s) in enumerate(zip(v["t_steps"], v["sigmas"])):
        if not math.isclose(s, t, rel_tol=1e-9):
            raise ValueError(f"sigmas: value {i} is {s}, but a {v['family']} schedule's sigma is its time, t_steps[{i}] = {t}")


def _n(v: Mapping[str, Any]) -> int:
    return len(v["t_steps"]) - 1


def _decoupled(v: Mapping[str, Any]) -> bool:
    return any(not math.isclose(a, b, rel_tol=SAME_TIME_RTOL) for a, b in zip(v["t_steps"], v["t_model"]))


def _header(v: Mapping[str, Any]) -> dict[str, Any]:
    return {"schedule": v["family"], "solver": v["solver"], "nfe": v["nfe"], "n_steps": _n(v),
            "evals_per_step": evals_per_step(v), "final": v["final"]}


def _sigmas_to_zero(v: Mapping[str, Any]) -> list[float]:
    """sigma(t_0) ... sigma(t_{N-1}), 0: the sampler's last step ends on the denoised sample."""
    return [float(s) for s in v["sigmas"][:-1]] + [0.0]


def _zero_caveat(v: Mapping[str, Any], what: str, last: float) -> str:
    if v["final"] == "zero":
        return ("trailing zero: exact, this schedule was learned with its last step landing on the model's denoised "
                f"prediction at {what} 0 (final='zero'; t_N = {v['t_steps'][-1]:.6g} only anchors the step times)")
    return (f"trailing zero: the final step time's {what} ({last:.6g} at t_N = {v['t_steps'][-1]:.6g}) is replaced by 0, "
            "so the last step lands on the model's denoised prediction instead of t_min, unlike the learned "
            "schedule (final='sigma_min')")


def _decoupled_caveat(v: Mapping[str, Any], how: str) -> list[str]:
    if not _decoupled(v):
        return []
    return [f"decoupled times: this schedule evaluates the network at t_model, not at t_steps; {how}"]


def evals_per_step(v: Mapping[str, Any]) -> int:
    """Network evaluations per step of the version's solver (Heun: 2, its last step Euler)."""
    solver = v["solver"]
    if solver not in EVALS_PER_STEP:
        raise ValueError(f"solver: unknown solver {solver!r}; known: {', '.join(sorted(EVALS_PER_STEP))}")
    return EVALS_PER_STEP[solver]


def _heun_caveat(v: Mapping[str, Any]) -> list[str]:
    if evals_per_step(v) == 2:
        return [f"{_n(v)} steps with two evaluations each, the last step Euler: {2 * _n(v) - 1} evaluations "
                "(a sampler that also corrects the last step spends one more)"]
    return []


# The formats.


def _raw(v: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    return {k: v[k] for k in FIELDS}, []


def _diffusers(v: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    family, n = v["family"], _n(v)
    payload = _header(v)
    caveats = _heun_caveat(v)
    if family == "flow":
        payload["sigmas"] = [float(s) for s in v["sigmas"][:-1]]
        payload["timesteps"] = [float(x) for x in v["model_timesteps"][:-1]]
        caveats += [
            f"flow matching: 'sigmas' are the first N = {n} flow sigmas (sigma = t in [0, 1]); the scheduler appends the "
            f"final 0 itself, replacing sigma(t_N) = {v['sigmas'][-1]:.6g}",
            "flow shift: the sigmas are final; the scheduler must not warp them: shift=1.0 (flow_shift=1.0 for "
            "use_flow_sigmas schedulers), use_dynamic_shifting=False (no mu), no shift_terminal, no karras/exponential/beta sigmas",
        ]
        caveats += _decoupled_caveat(v, "pass 'timesteps' together with 'sigmas' (FlowMatchEulerDiscreteScheduler "
                                        "takes both); a scheduler taking only sigmas evaluates at t_steps")
        return payload, caveats
    payload["sigmas"] = _sigmas_to_zero(v)
    caveats.append(_zero_caveat(v, "sigma", v["sigmas"][-1]) + " ('sigmas' for set_timesteps(sigmas=...), N+1 values)")
    if family == "vp_discrete":
        n_train = len((v.get("schedule_config") or {}).get("alphas_cumprod") or []) or None
        ints, dups = round_timesteps(v["model_timesteps"][:-1])
        payload["timesteps"] = ints
        payload["num_train_timesteps"] = n_train
        payload["train_sigma_range"] = _train_sigma_range(v)
        worst = max(abs(a - b) for a, b in zip(ints, v["model_timesteps"][:-1]))
        caveats.append(
            f"integer timesteps: the learned fractional timesteps are rounded to the nearest integer (max change {worst:.3g}); "
            "diffusers' set_timesteps(timesteps=...) takes integers (DPMSolverMultistep casts with astype(int64), which "
            "would truncate). The step grid then follows the rounded times; the sigmas export keeps them exact")
        payload["final_sigmas_type"] = v["final"]
        caveats.append(f"final step: 'timesteps' has the first N = {n} values; the scheduler adds the last sigma itself: "
                       "0 with final_sigmas_type='zero', sigma(timestep 0) = sigma(t_N) with 'sigma_min'; this schedule "
                       f"was learned with final_sigmas_type={v['final']!r}")
        if dups:
            caveats.append("duplicates: rounding made steps " + ", ".join(f"{i} and {j} (both {k})" for i, j, k in dups)
                           + " equal, a zero-length step; use 'sigmas' with a scheduler that takes them")
        caveats += _decoupled_caveat(v, "'timesteps' are the network's times (the scheduler derives the step sigmas "
                                        "from them, so the step grid follows t_model); 'sigmas' are the step times' sigmas "
                                        "(the scheduler derives the network's times from them)")
    else:
        payload["timesteps"] = None
        caveats.append(f"no timesteps: diffusers' timestep schedulers are discrete VP; a {family} model takes its "
                       "schedule as sigmas (EDMEulerScheduler only through client.apply.apply_schedule, which converts "
                       "them to its karras ramp)")
        caveats += _decoupled_caveat(v, "with sigmas alone the network is evaluated at t_steps")
    return payload, caveats


def _train_sigma_range(v: Mapping[str, Any]) -> list[float] | None:
    """VE sigma of the first and last training step, to check a scheduler's alphas_cumprod against."""
    ac = (v.get("schedule_config") or {}).get("alphas_cumprod")
    if not ac:
        return None
    return [math.sqrt((1.0 - ac[0]) / ac[0]), math.sqrt((1.0 - ac[-1]) / ac[-1])]


def _k_diffusion(v: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    payload = {**_header(v), "sigmas": _sigmas_to_zero(v)}
    caveats = [_zero_caveat(v, "sigma", v["sigmas"][-1])] + _heun_caveat(v)
    caveats += _decoupled_caveat(v, "k-diffusion's model wrappers derive the network's time from sigma, so t_model is lost")
    if v["family"] == "vp_discrete":
        caveats.append("discrete model: k-diffusion's wrapper maps sigma to a fractional training index by interpolating "
                       "log sigma between training steps; ld3 interpolates log alpha, so fractional indices differ slightly")
    if v["family"] == "flow":
        caveats.append("flow model: these are flow sigmas (sigma = t in [0, 1], x_t = (1 - t) x_0 + t eps), not VE "
                       "sigmas; a VE-style k-diffusion wrapper needs sigma / (1 - sigma)")
    if v["family"] in CONTINUOUS_VP:
        caveats.append(f"{v['family']}: these are sigma_t / alpha_t; the model's wrapper must map them back to its time")
    return payload, caveats


def _comfyui(v: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    sigmas = _sigmas_to_zero(v)
    payload = {**_header(v), "sigmas": sigmas, "sigmas_text": ", ".join(decimal_text(s) for s in sigmas)}
    caveats = [_zero_caveat(v, "sigma", v["sigmas"][-1]),
               "paste 'sigmas_text' into the sigmas field of a ManualSigmas node (plain decimals, 9 significant "
               "digits: that node reads no exponent notation) and connect its SIGMAS output to SamplerCustom or "
               "SamplerCustomAdvanced"]
    caveats += _heun_caveat(v)
    caveats += _decoupled_caveat(v, "ComfyUI derives the network's timestep from sigma, so t_model is lost")
    if v["family"] == "flow":
        caveats.append("flow model: SIGMAS are flow sigmas in [0, 1] (ComfyUI's flow sigma; the network's timestep is "
                       "sigma x multiplier), used as given: do not pass them through a node that shifts sigmas again")
    return payload, caveats


_EXPORTERS = {"raw": _raw, "diffusers": _diffusers, "k-diffusion": _k_diffusion, "comfyui": _comfyui}
