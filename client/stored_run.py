"""A stored schedule version as ld3core runs it: the one place the sampler integrations
(``client.diffusers_scheduler``, ``client.k_diffusion``) take the solver, the times, the final
rule and the network's inputs from.

``StoredRun.from_version(version)`` reads a version (a mapping such as a ``raw`` export's
payload or ``Client.schedule(...)``, or a row) with ``registry.exports``' checks, rebuilds its
noise schedule from ``schedule_config`` and names its solver. ``start(x)`` gives the solver's run
from ``x`` as the generator of its network evaluations (``ld3core.solvers.Evaluations``): a
stepwise sampler drives it one network call at a time and so computes what ld3core computed
when the version was certified, operation for operation. ``evaluation_times()`` lists the
solver times of those calls in order (NFE of them) and ``network_inputs()`` the values the
network is called with there (the version's ``model_timesteps``: a fractional DDPM index, t *
1000 for flow, ...), which a pipeline passes as its timesteps.

Imports torch (through ld3core); ``import client`` does not import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ld3core.schedules import DTYPE, NoiseSchedule, schedule_from_config
from ld3core.solvers import Evaluations, SolverSpec, get_solver
from registry.exports import export


@dataclass(frozen=True, eq=False)
class StoredRun:
    """The solver run a version certifies: its schedule, solver, times and final rule."""

    schedule: NoiseSchedule
    solver: SolverSpec
    t_steps: Tensor  # (N+1,) float64, ending at t_min
    t_model: Tensor  # (N+1,) float64: where the network is evaluated (LD3's decoupled times)
    final: str  # "sigma_min" or "zero" (ld3core.config.FINALS)
    model_timesteps: tuple[float, ...]  # the network's input at each t_model
    nfe: int

    @classmethod
    def from_version(cls, version: Any) -> "StoredRun":
        """``version``: a version (mapping or row) or its ``raw`` export (``Client.schedule(...)``).
        Raises ValueError naming the field for a version that cannot be run (another export
        format, missing or inconsistent fields, no ``schedule_config``, an unknown solver or
        noise schedule)."""
        v = export(raw_version(version), "raw")["payload"]
        if not v.get("schedule_config"):
            raise ValueError("schedule_config: the version does not carry its noise schedule, so it cannot be run exactly")
        schedule = schedule_from_config(v["schedule_config"])
        run = cls(schedule, get_solver(v["solver"]), torch.tensor(v["t_steps"], dtype=DTYPE),
                  torch.tensor(v["t_model"], dtype=DTYPE), v["final"] or "sigma_min",
                  tuple(float(k) for k in v["model_timesteps"]), int(v["nfe"]))
        if len(run.evaluation_times()) != run.nfe:
            raise ValueError(f"nfe: the version says {run.nfe}, its {v['solver']} run over {len(v['t_steps']) - 1} "
                             f"steps evaluates the network {len(run.evaluation_times())} times")
        return run

    def start(self, x: Tensor) -> Evaluations:
        """The solver's run from ``x`` (the sample at t_steps[0]) as the generator of its network
        evaluations: it yields ``(x, t)``, takes the data prediction D(x, t), returns the result."""
        return self.solver.evaluations(self.schedule, x, self.t_steps.to(x.device), self.t_model.to(x.device), self.final)

    def evaluation_times(self) -> list[float]:
        """The solver times of the network calls, in order (a dry run on a scalar sample)."""
        times, run = [], self.start(torch.zeros(1, dtype=DTYPE))
        try:
            x, t = next(run)
            while True:
                times.append(float(t))
                x, t = run.send(torch.zeros_like(x))
        except StopIteration:
            return times

    def network_inputs(self) -> list[float]:
        """The network's input at each call of ``evaluation_times`` (``model_timesteps`` at the matching t_model)."""
        knots = self.t_model.tolist()
        return [self.model_timesteps[_index(knots, t)] for t in self.evaluation_times()]

    @property
    def sigma_T(self) -> float:
        """The prior's standard deviation at t_steps[0] in ld3core's x (what its teacher pairs start from)."""
        return float(self.schedule.sigma(self.t_steps[0]))


def raw_version(version: Any) -> Any:
    """``version`` itself, or the payload of its ``raw`` export (a mapping or an object with ``format``
    and ``payload``); another export format lacks the exact times: ValueError naming it."""
    get = version.get if isinstance(version, Mapping) else lambda key: getattr(version, key, None)
    kind, payload = get("format"), get("payload")
    if kind is None or payload is None:
        return version
    if kind != "raw":
        raise ValueError(f"format: a version or its 'raw' export is needed here (the exact times), got a {kind!r} export")
    return payload


def _index(knots: list[float], t: float) -> int:
    """The position of ``t`` among ``knots`` (the solvers evaluate only at t_model's values)."""
    for i, k in enumerate(knots):
        if k == t:
            return i
    raise ValueError(f"t_model: the solver evaluates the network at t = {t!r}, which is not one of the version's times")
