"""A stored schedule version as a k-diffusion sampler, and a k-diffusion denoiser that evaluates
the network at the version's stored model times.

    from client.k_diffusion import LD3Denoiser, LD3Sampler
    sampler = LD3Sampler(version)                    # a version, a raw export (Client.schedule(...))
    model = LD3Denoiser(net, sampler.run, "eps")     # net(x, model_time, **extra_args) -> eps
    x = sampler(model, noise * sampler.sigmas[0], sampler.sigmas, extra_args={...}, callback=preview)

``LD3Sampler(version)`` is called as k-diffusion's samplers are, ``(model, x, sigmas,
extra_args=None, callback=None, disable=None)``, so it goes where k-diffusion- or ComfyUI-style
code takes a sampler function. It runs the version's solver through ``client.stored_run`` (the
code ld3core certified the version with, one network call at a time). For a version with
``t_model == t_steps`` and ``final="zero"`` it computes what k-diffusion's ``sample_euler``,
``sample_heun`` and ``sample_dpmpp_2m`` compute on the same sigmas (tests/client/test_k_diffusion.py;
with ``final="sigma_min"`` k-diffusion's Heun adds a corrector to the last step and its 2M stays
second order there, where ld3's take Euler / first order for N < 15). It also runs what no
k-diffusion sampler computes: the decoupled model times, unipc, ipndm and dpmpp_3m (k-diffusion's
``sample_dpmpp_3m_sde`` at eta = 0 warms up with a different second-order step and has no
``lower_order_final``).

The k-diffusion convention, for every noise schedule: a sampler's x at noise level sigma is
x = c x0 + sigma eps, and ``model(x, sigma)`` returns the denoised x0. Diffusion schedules use
the VE sigma = sigma_t / alpha_t with c = 1 (x_ve = x_t / alpha_t: EDM's and k-diffusion's
sigma); rectified flow uses the flow sigma = t with c = 1 - t, x as it is (ComfyUI's convention
for flow models). These are the ``sigmas`` of the k-diffusion export (``worker.version.step_sigmas``).

Imports torch (through ld3core); ``import client`` does not import this module.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from typing import Any

import torch
from torch import Tensor

from ld3core.denoisers import PREDICTIONS, bcast, to_x0
from ld3core.schedules import DTYPE, NoiseSchedule, as_time

from .stored_run import StoredRun

SIGMA_RTOL = 1e-6  # a float32 copy of a float64 sigma is within 6e-8 of it; stored times lie further apart


def k_sigma(schedule: NoiseSchedule, t: Tensor) -> Tensor:
    """The sigma of time ``t`` in a k-diffusion sampler: sigma_t / alpha_t, or t for rectified flow."""
    return schedule.sigma(t) if schedule.name == "flow" else schedule.edm_sigma(t)


def time_of_k_sigma(schedule: NoiseSchedule, s: Tensor) -> Tensor:
    """The inverse of ``k_sigma``."""
    return as_time(s) if schedule.name == "flow" else schedule.t_from_edm_sigma(s)


def k_scale(schedule: NoiseSchedule, t: Tensor) -> Tensor:
    """ld3core's x at time ``t`` over a k-diffusion sampler's x there: alpha_t, or 1 for rectified flow."""
    return torch.ones_like(as_time(t)) if schedule.name == "flow" else schedule.alpha(t)


def as_run(schedule: Any) -> StoredRun:
    """``schedule`` (a version: mapping or row; a ``raw`` export such as ``Client.schedule(...)``) as a
    ``StoredRun``; a ``StoredRun`` as it is. Other export forms lack the times: ValueError."""
    return schedule if isinstance(schedule, StoredRun) else StoredRun.from_version(schedule)


class LD3Sampler:
    """A version's solver run as a k-diffusion sampler function.

    ``sigmas`` must be the version's (``LD3Sampler.sigmas``: N+1 values, the last 0 for a version
    with ``final="zero"``, sigma(t_N) for ``final="sigma_min"``); they only name the run, which
    takes its times from the version: a list that differs at an index by more than ``SIGMA_RTOL``
    is refused with a ValueError naming it. The k-diffusion export's trailing 0 is such a
    difference for a "sigma_min" version, whose certified run ends at t_N.

    Each network call is ``model(x, sigma, **extra_args)`` with sigma = ``k_sigma(t_model[i])``,
    the sigma of the stored model time (LD3's decoupled times; ``t_steps[i]`` where they are not
    decoupled), of shape (B,) in x's dtype (float32 at least), and x the sampler's state divided
    by ``k_scale(t_model[i])``, so that a sigma-driven denoiser sees exactly what ld3core's
    denoiser saw at t_model[i]. ``LD3Denoiser`` evaluates the network at that stored time
    exactly; k-diffusion's own wrappers near it (see ``LD3Denoiser``).

    ``callback`` is called once per step, as k-diffusion does, with ``{'x': the state at
    sigmas[i], 'i': i, 'sigma': sigmas[i], 'sigma_hat': the sigma the model was called with,
    'denoised': its output}``. ``disable`` switches tqdm's progress bar over the steps off (None:
    tqdm's rule, off where the output is not a terminal); without tqdm installed there is none.
    No ``torch.no_grad`` inside: the caller decides.
    """

    def __init__(self, schedule: Any) -> None:
        self.run = as_run(schedule)

    @property
    def sigmas(self) -> Tensor:
        """The N+1 sigmas (float64) of the version's step times under its final rule."""
        run = self.run
        s = k_sigma(run.schedule, run.t_steps)
        return torch.cat([s[:-1], torch.zeros_like(s[-1:])]) if run.final == "zero" else s

    def check_sigmas(self, sigmas: Tensor | list[float]) -> None:
        """ValueError naming the first index where ``sigmas`` is not the version's."""
        given = torch.as_tensor(sigmas).detach().to("cpu", DTYPE).flatten()
        expected = self.sigmas
        if given.numel() != expected.numel():
            raise ValueError(f"sigmas: {given.numel()} values given; this version's {self.run.solver.name} run over "
                             f"{expected.numel() - 1} steps takes {expected.numel()} (LD3Sampler.sigmas)")
        bad = (~torch.isclose(given, expected, rtol=SIGMA_RTOL, atol=0.0)).nonzero()
        if not len(bad):
            return
        i, n = int(bad[0]), expected.numel() - 1
        if i == n and given[i] == 0 and self.run.final == "sigma_min":
            raise ValueError(f"sigmas[{n}] = 0, but this version was learned with final='sigma_min': its run ends at "
                             f"sigma {float(expected[n])!r} (t_N), not on the denoised sample; pass LD3Sampler.sigmas")
        raise ValueError(f"sigmas[{i}] = {float(given[i])!r}, but this version's step {i} is at sigma {float(expected[i])!r}; "
                         "pass LD3Sampler.sigmas (the sampler runs the version's own times)")

    def __call__(self, model: Callable[..., Tensor], x: Tensor, sigmas: Tensor, extra_args: Mapping[str, Any] | None = None,
                 callback: Callable[[dict[str, Any]], Any] | None = None, disable: bool | None = None) -> Tensor:
        """k-diffusion's sampler signature: ``x`` is the noise at sigmas[0] (noise * sigmas[0]);
        returns the sample at sigmas[-1] in the same convention."""
        self.check_sigmas(sigmas)
        extra_args = {} if extra_args is None else extra_args
        run, sch = self.run, self.run.schedule
        t_steps = run.t_steps.to(x.device)
        sigma_dtype = torch.promote_types(x.dtype, torch.float32)
        s_in = x.new_ones([x.shape[0]], dtype=sigma_dtype)
        n_steps, per_step = t_steps.shape[0] - 1, run.solver.evals_per_step
        evaluations = run.start(x * bcast(k_scale(sch, t_steps[0]), x))
        with _progress(n_steps, disable) as bar:
            try:
                state, t = next(evaluations)
                for k in itertools.count():
                    sigma = k_sigma(sch, t).to(sigma_dtype)
                    denoised = model(state / bcast(k_scale(sch, t), state), sigma * s_in, **extra_args)
                    if k % per_step == 0:  # the first evaluation of step i, at its state (k-diffusion's callback)
                        i = k // per_step
                        if callback is not None:
                            x_i = state / bcast(k_scale(sch, t_steps[i]), state)
                            callback({"x": x_i, "i": i, "sigma": sigmas[i], "sigma_hat": sigma, "denoised": denoised})
                        bar.update(1)
                    state, t = evaluations.send(denoised)
            except StopIteration as done:
                out = done.value
        return out if run.final == "zero" else out / bcast(k_scale(sch, t_steps[-1]), out)


class LD3Denoiser:
    """A k-diffusion denoiser ``model(x, sigma, **extra_args) -> x0`` of a network
    ``net(x_t, model_time, **extra_args) -> prediction`` ("eps", "x0", "v" or "flow", as
    ``ld3core.denoisers``), which evaluates the network at a version's stored model times.

    A sigma of one of the version's network calls (``k_sigma(t_model[i])`` to ``SIGMA_RTOL``:
    what ``LD3Sampler`` passes, and k-diffusion's samplers on ``LD3Sampler.sigmas`` where the
    times are not decoupled) is evaluated at that stored time t_model[i], with the stored network
    input ``model_timesteps[i]``, whatever the sigma's dtype: the network sees what it saw when
    the version was certified. Any other sigma maps to ld3core's time of it
    (``time_of_k_sigma``) and to the network input ``model_time(t)`` (default: the schedule's
    own, the fractional training index of a discrete VP schedule); ``model_time`` must reproduce
    the stored inputs (a diffusers flow model: ``lambda t: 1000 * t``), else ValueError.

    Why not k-diffusion's own wrappers: ``DiscreteEpsDDPMDenoiser`` (``sigma_to_t``,
    quantize=False) maps sigma to a fractional training index by interpolating log sigma
    linearly between training steps, while ld3core's ``VPDiscrete`` interpolates log alpha
    linearly in t. They agree at integer indices only; at the fractional indices LD3 learns they
    land up to 0.098 training steps apart below index 1, 0.017 at index 10, 0.0022 at 100 and
    1e-4 at 500 (DDPM's linear betas, float64 table), and with its table in float32 even integer
    indices move by up to 2.4e-4. On the shipped ddpm-digits model that moves a decoupled 5- or
    10-step dpmpp_2m sample by 1.3e-4 or 1.8e-4 (pixels in about [-2, 2]; tests/client/test_k_diffusion.py).
    """

    def __init__(self, net: Callable[..., Tensor], schedule: Any, prediction: str,
                 model_time: Callable[[Tensor], Tensor] | None = None) -> None:
        if prediction not in PREDICTIONS:
            raise ValueError(f"unknown prediction type {prediction!r}; known: {PREDICTIONS}")
        run = as_run(schedule)
        self.net, self.schedule, self.prediction = net, run.schedule, prediction
        self.model_time = model_time or run.schedule.model_time
        inputs = dict(zip(run.evaluation_times(), run.network_inputs()))  # the stored (t_model, model_timesteps) pairs
        times = sorted(inputs, reverse=True)
        self.times = torch.tensor(times, dtype=DTYPE)
        self.inputs = torch.tensor([inputs[t] for t in times], dtype=DTYPE)
        self.model_sigmas = k_sigma(self.schedule, self.times)
        mapped = self.model_time(self.times)
        off = (~torch.isclose(mapped, self.inputs, rtol=1e-6, atol=1e-9)).nonzero()
        if len(off):
            i = int(off[0])
            raise ValueError(f"model_time: gives {float(mapped[i])!r} at t = {times[i]!r}, where the version's network input "
                             f"is {float(self.inputs[i])!r}; pass the network's own map of time to its input")

    def network_time(self, sigma: Tensor) -> tuple[Tensor, Tensor]:
        """(ld3core's time, the network's input) for each sigma ((B,) float64): the stored pair
        where sigma is one of the version's, else ``time_of_k_sigma`` and ``model_time``."""
        s = sigma.detach().to(DTYPE)
        table, times, inputs = self.model_sigmas.to(s.device), self.times.to(s.device), self.inputs.to(s.device)
        gap = (s[:, None] / table[None, :] - 1.0).abs()
        near, j = gap.min(dim=1)
        stored = near <= SIGMA_RTOL
        t = time_of_k_sigma(self.schedule, sigma.to(DTYPE))
        if not bool(torch.isfinite(self.schedule.lam(t[~stored])).all()):
            raise ValueError(f"sigma: {s[~stored].tolist()} holds a noise level outside the {self.schedule.name} schedule")
        return torch.where(stored, times[j], t), torch.where(stored, inputs[j], self.model_time(t))

    def __call__(self, x: Tensor, sigma: Tensor, **extra_args: Any) -> Tensor:
        sigma = torch.as_tensor(sigma, device=x.device)
        t, net_input = self.network_time(sigma.expand(x.shape[0]) if sigma.ndim == 0 else sigma)
        x_t = x * bcast(k_scale(self.schedule, t), x)
        pred = self.net(x_t, net_input.to(torch.float32), **extra_args)
        return to_x0(pred, x_t, t, self.schedule, self.prediction)  # type: ignore[arg-type]


def _progress(total: int, disable: bool | None) -> Any:
    """tqdm's bar over ``total`` steps (k-diffusion's ``trange``), or a stand-in where tqdm is not installed."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return nullcontext(_NoBar())
    return tqdm(total=total, disable=disable)


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass
