"""What a consumer of a served schedule runs of it (``config.CONSUMERS``), as pure functions.

``form(consumer, schedule, solver, t_steps, t_model, final)`` is the (t_steps, t_model, final)
that consumer samples with when it is given the schedule: a stock sampler derives the network's
time from the step (t_model = t_steps), takes its own last step, and a stock diffusers
scheduler on a VP-discrete model takes the export's integer timesteps, the network's times
rounded, and derives its steps from them. The job
measures the test loss of each form beside the certified one (``ld3core.optimize``), so an
export can say "exact" or what its approximation costs. ``snap_timesteps`` is that rounding,
with straight-through gradients, for a job that learns under it (``LD3Config.target``).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from .config import CONSUMERS
from .schedules import NoiseSchedule, VPDiscrete


class Form(NamedTuple):
    t_steps: Tensor
    t_model: Tensor
    final: str


def snap_timesteps(t: Tensor, schedule: NoiseSchedule) -> Tensor:
    """VP discrete: ``t`` moved to the nearest training-step time t = (k + 1) / n (an integer
    timestep k), the gradient passed straight through; other schedules: ``t`` itself."""
    if not isinstance(schedule, VPDiscrete):
        return t
    k = torch.round(schedule.model_time(t.detach()))
    return t + (schedule.t_min + k / schedule.n_train - t).detach()


def runs(consumer: str, solver: str, schedule: NoiseSchedule | None = None) -> bool:
    """Whether ``consumer`` runs ``solver`` as ld3core does (on ``schedule``'s family, if given)."""
    c = CONSUMERS[consumer]
    allowed = c.flow_solvers if schedule is not None and schedule.name == "flow" and c.flow_solvers is not None else c.solvers
    return allowed is None or solver in allowed


def form(consumer: str, schedule: NoiseSchedule, t_steps: Tensor, t_model: Tensor, final: str) -> Form:
    """What ``consumer`` samples with when given (t_steps, t_model, final)."""
    c = CONSUMERS[consumer]
    if not c.decoupled and c.grid == "t_model" and isinstance(schedule, VPDiscrete):
        t_steps = t_model  # its steps follow the network's times (see Consumer.grid)
    t = snap_timesteps(t_steps, schedule) if c.integer_timesteps else t_steps
    tm = (snap_timesteps(t_model, schedule) if c.integer_timesteps else t_model) if c.decoupled else t
    return Form(t, tm, c.final or final)


def is_exact(f: Form, t_steps: Tensor, t_model: Tensor, final: str) -> bool:
    """Whether a form is the schedule itself (bit for bit, and the same final rule)."""
    return f.final == final and torch.equal(f.t_steps, t_steps) and torch.equal(f.t_model, t_model)
