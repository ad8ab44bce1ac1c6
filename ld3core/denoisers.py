"""One denoiser contract, and adapters that bring eps-, x0-, v- and flow-velocity networks to it.

A denoiser is a callable ``D(x, t) -> x0_hat`` (the data prediction) with a ``schedule``
attribute. ``t`` is a float64 tensor of shape ``()`` or ``(B,)``: the time the network is
conditioned on (with decoupled LD3 times, ``t^c_i``). Conversions between prediction types
use alpha and sigma at that same ``t``; this module is the only place that holds them.

A conditional denoiser (class labels, text embeddings) is a family of denoisers:
``bind(cond)`` gives the denoiser of a batch whose sample i carries condition ``cond[i]``.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Protocol

import torch
from torch import Tensor

from .schedules import NoiseSchedule, RectifiedFlow

Prediction = Literal["eps", "x0", "v", "flow"]
PREDICTIONS: tuple[str, ...] = ("eps", "x0", "v", "flow")


class Denoiser(Protocol):
    schedule: NoiseSchedule

    def __call__(self, x: Tensor, t: Tensor) -> Tensor: ...


class ConditionalDenoiser(Protocol):
    schedule: NoiseSchedule

    def bind(self, cond: Tensor) -> Denoiser:
        """The denoiser of a batch whose sample i carries ``cond[i]`` (dim 0 is the batch)."""
        ...


def is_conditional(denoiser: Denoiser | ConditionalDenoiser) -> bool:
    return callable(getattr(denoiser, "bind", None))


def conditioned(denoiser: Denoiser | ConditionalDenoiser, cond: Tensor | None) -> Denoiser:
    """The denoiser for a batch with per-sample conditions ``cond`` (None: an unconditional batch).

    Refuses a conditional denoiser without conditions and conditions for an unconditional one.
    """
    if cond is None:
        if is_conditional(denoiser):
            raise ValueError("a conditional denoiser needs per-sample conditions (the pairs carry none)")
        return denoiser  # type: ignore[return-value]
    if not is_conditional(denoiser):
        raise ValueError("per-sample conditions given for an unconditional denoiser")
    return denoiser.bind(cond)  # type: ignore[union-attr]


def bcast(c: Tensor, x: Tensor) -> Tensor:
    """Shape a per-sample coefficient (``()`` or ``(B,)``) to broadcast against ``x``, in x's dtype."""
    c = c.to(dtype=x.dtype, device=x.device)
    return c.reshape(c.shape + (1,) * (x.ndim - c.ndim)) if c.ndim else c


def to_x0(pred: Tensor, x: Tensor, t: Tensor, schedule: NoiseSchedule, prediction: Prediction) -> Tensor:
    """Convert a network output of type ``prediction`` at time ``t`` into an x0 prediction."""
    if prediction == "x0":
        return pred
    alpha, sigma = bcast(schedule.alpha(t), x), bcast(schedule.sigma(t), x)
    if prediction == "eps":
        return (x - sigma * pred) / alpha
    if prediction == "v":  # v = alpha eps - sigma x0  (Salimans & Ho 2022)
        return (alpha * x - sigma * pred) / (alpha**2 + sigma**2)
    if prediction == "flow":  # v = dx/dt = eps - x0 for alpha = 1 - t, sigma = t
        if not isinstance(schedule, RectifiedFlow):
            raise ValueError("flow-velocity prediction needs the rectified-flow schedule")
        return x - sigma * pred
    raise ValueError(f"unknown prediction type {prediction!r}; known: {PREDICTIONS}")


class NetworkDenoiser:
    """Wraps ``net(x, model_time, *cond) -> prediction`` into the denoiser contract.

    ``model_time`` maps solver time to what the network was trained on; by default the
    schedule's own (the training-step index for discrete VP, t otherwise).
    """

    def __init__(
        self,
        net: Callable[..., Tensor],
        schedule: NoiseSchedule,
        prediction: Prediction,
        model_time: Callable[[Tensor], Tensor] | None = None,
        cond: tuple[Any, ...] = (),
    ) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {prediction!r}; known: {PREDICTIONS}")
        self.net, self.schedule, self.prediction = net, schedule, prediction
        self.model_time = model_time or schedule.model_time
        self.cond = cond

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        tm = self.model_time(t).to(torch.float32)
        if tm.ndim == 0:
            tm = tm.expand(x.shape[0])
        return to_x0(self.net(x, tm, *self.cond), x, t, self.schedule, self.prediction)


class GuidedDenoiser:
    """Classifier-free guidance: D = D_u + w (D_c - D_u), one batched network call.

    ``net(x, model_time, cond)`` is called on ``cat([x, x])`` with ``cat([cond, uncond])``
    (conditions batched along dim 0, one per sample). Guidance combines the x0 predictions,
    which for a fixed (x, t) is the same affine combination as combining eps or v.
    """

    def __init__(
        self,
        net: Callable[..., Tensor],
        schedule: NoiseSchedule,
        prediction: Prediction,
        cond: Tensor,
        uncond: Tensor,
        scale: float,
        model_time: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        self.inner = NetworkDenoiser(net, schedule, prediction, model_time, cond=(torch.cat([cond, uncond]),))
        self.schedule, self.scale = schedule, float(scale)

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        b = x.shape[0]
        tt = t.expand(b) if t.ndim == 0 else t
        x0_c, x0_u = self.inner(torch.cat([x, x]), torch.cat([tt, tt])).split(b)
        return x0_u + self.scale * (x0_c - x0_u)


class GuidedNetwork:
    """A conditional network as a conditional denoiser, with classifier-free guidance.

    ``net(x, model_time, cond) -> prediction``; ``uncond`` is the null condition of one sample
    (a label of shape ``()``, an embedding ``(L, D)``). ``bind(cond)`` gives a ``GuidedDenoiser``
    at ``scale``; scale 1 is the conditional model itself, called without the unconditional half.
    """

    def __init__(
        self,
        net: Callable[..., Tensor],
        schedule: NoiseSchedule,
        prediction: Prediction,
        uncond: Tensor,
        scale: float,
        model_time: Callable[[Tensor], Tensor] | None = None,
    ) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {prediction!r}; known: {PREDICTIONS}")
        self.net, self.schedule, self.prediction, self.model_time = net, schedule, prediction, model_time
        self.uncond, self.scale = uncond, float(scale)

    def bind(self, cond: Tensor) -> Denoiser:
        if cond.shape[1:] != self.uncond.shape:
            raise ValueError(f"conditions of shape {tuple(cond.shape[1:])} per sample; this model takes {tuple(self.uncond.shape)}")
        if self.scale == 1.0:
            return NetworkDenoiser(self.net, self.schedule, self.prediction, self.model_time, cond=(cond,))
        uncond = self.uncond.to(cond.device).expand(cond.shape[0], *self.uncond.shape)
        return GuidedDenoiser(self.net, self.schedule, self.prediction, cond, uncond, self.scale, self.model_time)


class Rematerialized:
    """Recompute each network call in the backward pass instead of storing its activations.

    Only the solver states x_{t_i} stay in memory, so peak memory is nearly flat in NFE
    (LD3 App. B.3). Uses non-reentrant ``torch.utils.checkpoint``, without saving and restoring
    the random generators' states around each call: a denoiser is a deterministic function of
    (x, t) (networks in eval mode), and reading a CUDA generator's state is not allowed while an
    iteration is being captured as a CUDA graph (``ld3core.graphs``).
    """

    def __init__(self, denoiser: Denoiser) -> None:
        self.inner, self.schedule = denoiser, denoiser.schedule

    def __call__(self, x: Tensor, t: Tensor) -> Tensor:
        if not torch.is_grad_enabled():
            return self.inner(x, t)
        return torch.utils.checkpoint.checkpoint(self.inner, x, t, use_reentrant=False, preserve_rng_state=False)
