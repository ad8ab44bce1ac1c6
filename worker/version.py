"""What a finished job stores: the fields of its schedule version, and the job's summary.

A version carries the served step times in the units every consumer needs (the solver's times,
k-diffusion-style sigmas, the network's own timesteps), its provenance (the model's content
hash, the full configuration, the code version) and its quality next to the best heuristic on
the held-out test pairs.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import json
import subprocess
from pathlib import Path
from typing import Any

import torch

from ld3core.config import JobConfig
from ld3core.heuristics import heuristic
from ld3core.optimize import JobResult
from ld3core.schedules import NoiseSchedule
from registry.catalog import ModelSpec
from registry.db import json_safe
from registry.schemas import ScheduleVersionCreate

from .loaders import LoadedModel


def step_sigmas(schedule: NoiseSchedule, t: torch.Tensor) -> list[float]:
    """The sigma a k-diffusion-style sampler uses at each step time: sigma/alpha (VE, EDM's
    sigma) for diffusion schedules, sigma_t = t for rectified flow (its sigmas are in [0, 1])."""
    t = t.to(torch.float64)
    s = schedule.sigma(t) if schedule.name == "flow" else schedule.edm_sigma(t)
    return s.tolist()


def model_timesteps(loaded: LoadedModel, t_model: torch.Tensor) -> list[float]:
    """The value the network is called with at each step (e.g. a DDPM timestep in [0, 1000))."""
    fn = loaded.model_time or loaded.schedule.model_time
    return fn(t_model.to(torch.float64)).tolist()


def time_space(schedule: NoiseSchedule) -> str:
    return f"{schedule.name} t in [{schedule.t_min:g}, {schedule.T:g}]"


def quality(res: JobResult, loss: str) -> dict[str, Any]:
    """The learned schedule next to the best heuristic on the held-out test pairs."""
    best = res.best_heuristic
    return {
        "metric": loss, "n_test": res.config["n_test"], "source": res.source, "message": res.message,
        "learned": res.test["ld3"], "best_heuristic": {"name": best, **res.test[best]},
        "learned_minus_best": res.test["ld3_minus_best"], "guard": res.guard,
        "heuristics": {k: v for k, v in res.test.items() if k not in ("ld3", "ld3_minus_best")},
        # What each consumer gets of the served schedule (ld3core.config.CONSUMERS): exact, or its measured cost.
        "consumers": res.consumers, "exact_for": [c for c, r in res.consumers.items() if r["exact"]],
    }


def model_sha256(spec: ModelSpec) -> str:
    """The weights' content hash; an analytic model (no weights) hashes its catalog entry."""
    if spec.sha256:
        return spec.sha256
    entry = {k: v for k, v in spec.to_dict().items() if k not in ("description", "guard_features")}
    return hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()


@functools.cache
def code_version() -> str:
    """Package version, plus the git commit when the code runs from a checkout (``+g<sha>``,
    ``.dirty`` when tracked files differ from it)."""
    try:
        version = importlib.metadata.version("ld3-schedule-service")
    except importlib.metadata.PackageNotFoundError:
        version = "0+unknown"
    root = str(Path(__file__).resolve().parent.parent)
    try:
        commit = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return version
    return f"{version}+g{commit}" + (".dirty" if dirty else "")


def schedule_version(res: JobResult, cfg: JobConfig, loaded: LoadedModel, spec: ModelSpec, *, job_id: str,
                     guidance: float | None, samples_png: bytes | None) -> ScheduleVersionCreate:
    """The new version of (model, solver, nfe[, guidance]) that job ``job_id`` learned."""
    sch = loaded.schedule
    val = res.val["ld3_hard"] if res.source == "ld3" else res.val[res.source]
    return ScheduleVersionCreate(
        model_key=spec.key, solver=cfg.ld3.solver, nfe=cfg.ld3.nfe, guidance=guidance,
        t_steps=res.t_steps.tolist(), t_model=res.t_model.tolist(), time_space=time_space(sch),
        sigmas=step_sigmas(sch, res.t_steps), model_timesteps=model_timesteps(loaded, res.t_model),
        schedule_config=sch.config(), source=res.source, model_sha256=model_sha256(spec),
        config=cfg.to_dict(), seed=cfg.ld3.seed, code_version=code_version(), val_loss=json_safe(val),
        quality=json_safe(quality(res, cfg.ld3.loss)), job_id=job_id, samples_png=samples_png,
    )


def job_result(res: JobResult, schedule: NoiseSchedule, cfg: JobConfig) -> dict[str, Any]:
    """The job's summary (``JobRow.result``): no per-iteration history, that is the curve.

    ``step_sigmas``: the learned schedule ("ld3") and every heuristic the job scored, as the
    N+1 sigmas of ``step_sigmas`` (the units of the version's ``sigmas``), for the dashboard's plot.
    """
    d = res.to_dict()
    d["train"] = {k: v for k, v in d["train"].items() if k != "history"}
    n = cfg.ld3.n_steps
    d["step_sigmas"] = {"ld3": step_sigmas(schedule, res.learned_t_steps),
                        **{h: step_sigmas(schedule, heuristic(h, schedule, n)) for h in cfg.heuristics}}
    return json_safe(d)
