"""A diffusers scheduler that runs a stored schedule version exactly: ``LD3Scheduler``.

    from client.diffusers_scheduler import LD3Scheduler
    pipe.scheduler = LD3Scheduler.from_version(version, scheduler=pipe.scheduler)
    image = pipe(..., num_inference_steps=pipe.scheduler.nfe).images

Which to use:
- ``client.apply_schedule`` sets a *stock* diffusers scheduler (DPM-Solver++, UniPC, Euler,
  Heun, flow matching) to the learned steps. The stock scheduler runs its own copy of the
  solver, so what it computes is an approximation whose every loss is stated in the export's
  ``caveats``: network times rounded to integers (VP discrete ``timesteps=``), decoupled times
  (``t_model``) dropped where it takes one list, diffusers' own alpha/sigma interpolation, its
  final-step and warm-start rules where they differ from the version's. Use it when the service
  must keep a stock scheduler.
- ``LD3Scheduler`` runs the version itself: the step times, the decoupled fractional network
  times, the solver's warm start, lower-order-final and final-step rules, through ld3core's
  solver (``ld3core.solvers``, each written once as the generator of its network evaluations),
  so a pipeline computes what ld3core computed when the version was certified, to float32
  rounding, in exactly NFE network calls. Use it to get the quality the version's figures state.

How it works: ``timesteps`` are the version's network inputs (``StoredRun.network_inputs``: a
fractional DDPM index for VP discrete, t * 1000 for flow), one per network call, so a pipeline
that loops over them calls its network NFE times. The first ``step`` starts the solver's run
(``StoredRun.start``) from the sample the network was called on; every ``step`` turns the
network output into the data prediction D (``ld3core.denoisers.to_x0`` at that call's solver
time), sends D into the run and returns the run's next network input as ``prev_sample`` (after
the last call, the run's result). Samples live in ld3core's x (x_t = alpha_t x_0 + sigma_t eps),
so ``scale_model_input`` is the identity and ``init_noise_sigma`` is sigma at the first step
time: pipelines that scale their noise by it (Stable Diffusion, LDM) start where ld3core's
teacher starts; ``DDPMPipeline`` ignores it and starts from unit noise (sigma_T is 1 - 2e-5 for
DDPM's betas, 0.999 for flow), which the run takes as its x_T.

Refused, with a ValueError: a step count other than the version's NFE; starting the run after
its first call (``set_begin_index``, img2img strength < 1: a multistep run has no history
there); a sample changed between calls (inpainting blends): the run continues from its own
state, which would no longer be the pipeline's.

Imports torch and diffusers; ``import client`` does not import this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from diffusers.configuration_utils import ConfigMixin, register_to_config
from diffusers.schedulers.scheduling_utils import SchedulerMixin, SchedulerOutput
from torch import Tensor

from ld3core.denoisers import bcast, to_x0
from ld3core.schedules import DTYPE, VPDiscrete
from ld3core.solvers import Evaluations
from registry.exports import export

from .stored_run import StoredRun, raw_version

# diffusers' prediction_type names -> ld3core's (ld3core.denoisers.PREDICTIONS).
PREDICTION_TYPES = {"epsilon": "eps", "v_prediction": "v", "sample": "x0", "flow_prediction": "flow"}
ALPHAS_RTOL = 1e-4  # diffusers keeps alphas_cumprod in float32; a version's come from the same values


class LD3Scheduler(SchedulerMixin, ConfigMixin):
    """Runs the stored schedule ``version`` (a ``raw`` export's payload) with its own solver.

    ``prediction_type``: what the network predicts, in diffusers' names ("epsilon",
    "v_prediction", "sample", "flow_prediction"). Build it with ``from_version``.
    """

    order = 1  # every timestep is one network call (Heun's 2N - 1 calls are 2N - 1 timesteps)

    @register_to_config
    def __init__(self, version: dict[str, Any], prediction_type: str = "epsilon") -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type: unknown {prediction_type!r}; known: {', '.join(PREDICTION_TYPES)}")
        self.run = StoredRun.from_version(version)
        self.prediction = PREDICTION_TYPES[prediction_type]
        if self.prediction == "flow" and self.run.schedule.name != "flow":
            raise ValueError(f"prediction_type: a flow-velocity network needs a flow schedule; this version's is "
                             f"{self.run.schedule.name!r}")
        self.nfe = self.run.nfe
        self.num_inference_steps = self.nfe
        self.init_noise_sigma = self.run.sigma_T
        self.evaluation_times = self.run.evaluation_times()  # solver time of each network call (float)
        self.timesteps = torch.tensor(self.run.network_inputs(), dtype=torch.float32)
        self._reset()

    @classmethod
    def from_version(cls, version: Any, prediction_type: str | None = None, *, scheduler: Any = None) -> "LD3Scheduler":
        """The scheduler of ``version`` (a mapping such as ``Client.schedule(...)``, a row, or a
        ``raw`` export). ``prediction_type`` in diffusers' names; None takes it from ``scheduler``
        (the pipeline's own: its ``prediction_type``, flow-matching schedulers "flow_prediction"),
        else from the version's noise schedule (flow: "flow_prediction", others "epsilon").
        A ``scheduler`` is also checked to have the version's noise schedule (ValueError if not)."""
        payload = export(raw_version(version), "raw")["payload"]
        if scheduler is not None:
            _check_noise_schedule(scheduler, payload)
            prediction_type = prediction_type or _prediction_type_of(scheduler)
        if prediction_type is None:
            prediction_type = "flow_prediction" if (payload.get("schedule_config") or {}).get("name") == "flow" else "epsilon"
        return cls(version=payload, prediction_type=prediction_type)

    def set_timesteps(self, num_inference_steps: int | None = None, device: str | torch.device | None = None) -> None:
        """Start over (a new run on the next ``step``); ``num_inference_steps`` must be None or the version's NFE."""
        if num_inference_steps not in (None, self.nfe):
            raise ValueError(f"LD3Scheduler runs the stored {self.run.solver.name} schedule in exactly {self.nfe} network "
                             f"evaluations, but {num_inference_steps} steps were asked for: call the pipeline with "
                             f"num_inference_steps={self.nfe}")
        self.timesteps = self.timesteps.to(device)
        self._reset()

    def _reset(self) -> None:
        self._evaluations: Evaluations | None = None
        self._request: tuple[Tensor, Tensor] | None = None  # where the run asked for the network last
        self._returned: Tensor | None = None  # the prev_sample handed to the pipeline last
        self._step_index = 0

    @property
    def step_index(self) -> int:
        """The number of network calls answered in the current run."""
        return self._step_index

    @property
    def begin_index(self) -> int:
        return 0

    def set_begin_index(self, begin_index: int = 0) -> None:
        if begin_index != 0:
            raise ValueError(f"LD3Scheduler runs the stored schedule from its first step; it cannot begin at step {begin_index} "
                             "(img2img strength < 1): a multistep solver has no history there")

    def scale_model_input(self, sample: Tensor, timestep: Any = None) -> Tensor:
        """The identity: the network takes ld3core's x_t as it is."""
        return sample

    def step(self, model_output: Tensor, timestep: Any, sample: Tensor, return_dict: bool = True,
             **kwargs: Any) -> SchedulerOutput | tuple[Tensor]:
        """Answer the run's current network call with ``model_output`` (the network's output at
        ``sample``, guided already in a CFG pipeline) and return the sample of its next call, or the
        run's result after the last. ``timestep`` is not read (the run knows its times); ``kwargs``
        (``generator``, ``eta``) are accepted and unused: the run is deterministic. A half-precision
        run computes in float32, as diffusers' schedulers do, and hands back the pipeline's dtype."""
        if self._step_index >= self.nfe:
            raise ValueError(f"step: all {self.nfe} network evaluations of this run are answered; call set_timesteps to start a new run")
        if self._evaluations is None:
            work = sample.to(torch.float32) if sample.dtype in (torch.float16, torch.bfloat16) else sample
            self._evaluations = self.run.start(work)
            self._request = next(self._evaluations)
        elif sample is not self._returned and not torch.equal(sample, self._returned):
            raise ValueError("step: the sample differs from the prev_sample of the last step (the pipeline changed it, as "
                             "inpainting does); LD3Scheduler runs the stored solver from its own state and cannot take it in")
        x, t = self._request
        d = to_x0(model_output.to(x.dtype), x, t, self.run.schedule, self.prediction)
        try:
            self._request = self._evaluations.send(d)
            out = self._request[0]
        except StopIteration as done:
            self._request, out = None, done.value
        self._step_index += 1
        self._returned = out.to(sample.dtype)
        return SchedulerOutput(prev_sample=self._returned) if return_dict else (self._returned,)

    def add_noise(self, original_samples: Tensor, noise: Tensor, timesteps: Tensor) -> Tensor:
        """alpha_t x_0 + sigma_t noise at the solver times of ``timesteps`` (values of ``self.timesteps``)."""
        asked = torch.as_tensor(timesteps, dtype=torch.float32).reshape(-1).cpu()
        match = asked[:, None] == self.timesteps.cpu()[None, :]
        if not bool(match.any(1).all()):
            raise ValueError(f"add_noise: timesteps {asked.tolist()} are not all among this scheduler's {self.timesteps.tolist()}")
        t = torch.tensor(self.evaluation_times, dtype=DTYPE)[match.to(torch.int8).argmax(1)].to(original_samples.device)
        t = t.expand(original_samples.shape[0]) if t.numel() == 1 else t
        sch = self.run.schedule
        return bcast(sch.alpha(t), original_samples) * original_samples + bcast(sch.sigma(t), noise) * noise

    def __len__(self) -> int:
        """The network's training timesteps, as diffusers' schedulers count them (flow: diffusers' 1000)."""
        return self.run.schedule.n_train if isinstance(self.run.schedule, VPDiscrete) else 1000


def _is_flow_scheduler(scheduler: Any) -> bool:
    return "FlowMatch" in type(scheduler).__name__ or bool(scheduler.config.get("use_flow_sigmas"))


def _prediction_type_of(scheduler: Any) -> str:
    """A diffusers scheduler's prediction type (flow-matching schedulers: the flow velocity)."""
    return "flow_prediction" if _is_flow_scheduler(scheduler) else scheduler.config.get("prediction_type", "epsilon")


def _check_noise_schedule(scheduler: Any, payload: Mapping[str, Any]) -> None:
    """``scheduler`` (a pipeline's own) must describe the version's noise schedule, where it says which."""
    if isinstance(scheduler, LD3Scheduler):
        return
    config = payload.get("schedule_config") or {}
    family, name = config.get("name"), type(scheduler).__name__
    if _is_flow_scheduler(scheduler) != (family == "flow"):
        raise ValueError(f"scheduler: {name} is {'a' if _is_flow_scheduler(scheduler) else 'not a'} flow-matching scheduler, "
                         f"but the version's noise schedule is {family!r}")
    ours = getattr(scheduler, "alphas_cumprod", None)
    if family == "vp_discrete" and ours is not None:
        theirs = torch.tensor(config["alphas_cumprod"], dtype=DTYPE)
        ours = torch.as_tensor(ours, dtype=DTYPE)
        if ours.shape != theirs.shape or not torch.allclose(ours, theirs, rtol=ALPHAS_RTOL, atol=0):
            raise ValueError(f"scheduler: {name}'s alphas_cumprod ({ours.numel()} values) are not the version's "
                             f"({theirs.numel()}): another noise schedule (num_train_timesteps, beta_schedule?)")
