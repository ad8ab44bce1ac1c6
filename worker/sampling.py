"""From a catalog model and a job's options to LD3's inputs, and sampling with a learned schedule.

The one place that knows how a loaded model's conditioning and latent space meet LD3:
- conditions are a pure function of each sample's seed and the job options (class label
  ``class_labels[seed % len(class_labels)]``, by default ``seed % num_classes``; prompt
  ``prompts[seed % len(prompts)]``), so a resumed job recomputes the same pairs and a sample
  never depends on the batch it was drawn in;
- classifier-free guidance at the job's scale, against the catalog's null label or the empty
  prompt (no scale given: 1, the conditional model alone);
- latent models are trained and sampled in latent space (so LD3's ball radius counts latent
  dimensions, ``ld3core.train.radius``), decoded by the VAE before the loss and the images,
  with the paper's latent recipe (``LD3Config.latent``);
- the guard's feature map is the one the catalog names (``ModelSpec.guard_features``), on
  decoded images.
The worker runner (through ``run_model_job``) and the benchmarks call these; ``ld3core`` stays
free of diffusers.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from ld3core.config import JobConfig, LD3Config
from ld3core.denoisers import ConditionalDenoiser, Denoiser, conditioned
from ld3core.losses import make_loss
from ld3core.optimize import Conditions, Features, JobResult, run_job
from ld3core.solvers import get_solver
from ld3core.teacher import prior_noise
from ld3core.train import LossFn, Progress
from registry.conditioning import conditioning_errors

from .loaders import LoadedModel


@dataclass(frozen=True)
class JobInputs:
    """What ``ld3core.optimize.run_job`` takes for one catalog model and one set of job options.

    ``conditions`` maps sample seeds to per-sample conditions (None for unconditional models);
    ``latent``: the model samples in latent space, so the paper's latent recipe applies
    (``ld3_config``); ``features`` is the guard's feature map of samples (None: the catalog names
    none, or no model root was given to find it).
    """

    denoiser: Denoiser | ConditionalDenoiser
    sample_shape: tuple[int, ...]
    loss_fn: LossFn
    conditions: Conditions | None
    latent: bool = False
    features: Features | None = None

    def ld3_config(self, **options: Any) -> LD3Config:
        """The job's LD3 configuration: the model's recipe (pixel or latent), ``options`` on top."""
        return LD3Config.latent(**options) if self.latent else LD3Config(**options)


def _check_options(
    loaded: LoadedModel, guidance: float | None, prompts: Sequence[str] | None, class_labels: Sequence[int] | None = None
) -> None:
    """``ValueError`` naming the first option that does not fit the model (``registry.conditioning``, the API's rules)."""
    errors = conditioning_errors(loaded.spec, guidance=guidance, prompts=prompts, class_labels=class_labels)
    if errors:
        name, reason = errors[0]
        raise ValueError(f"{name}: {reason}")


def conditions_for(
    loaded: LoadedModel, *, prompts: Sequence[str] | None = None, class_labels: Sequence[int] | None = None,
    device: torch.device | str = "cpu",
) -> Conditions | None:
    """Seeds -> per-sample conditions: class ``class_labels[seed % len(class_labels)]`` (default
    every class: ``seed % num_classes``), or the embedding of ``prompts[seed % len(prompts)]``
    (each prompt encoded once); None for unconditional models."""
    _check_options(loaded, None, prompts, class_labels)
    if loaded.conditioning == "class":
        labels = list(class_labels) if class_labels is not None else list(range(loaded.spec.num_classes))
        return lambda seeds: torch.tensor([labels[int(s) % len(labels)] for s in seeds], dtype=torch.long, device=device)
    if loaded.conditioning == "text":
        table = loaded.encode_prompts(list(prompts)).to(device)  # type: ignore[arg-type]
        return lambda seeds: table[torch.tensor([int(s) % table.shape[0] for s in seeds], device=device)]
    return None


def _denoiser(loaded: LoadedModel, guidance: float | None) -> Denoiser | ConditionalDenoiser:
    if loaded.conditioning == "none":
        assert loaded.denoiser is not None
        return loaded.denoiser
    return loaded.conditional(1.0 if guidance is None else float(guidance))


def guard_features(loaded: LoadedModel, model_root: str | os.PathLike, device: torch.device | str = "cpu") -> Features | None:
    """The feature map the catalog names for the guard's distribution check (``ModelSpec.guard_features``),
    applied to decoded images; None if it names none."""
    if loaded.spec.guard_features is None:
        return None
    from ld3core.classifier import classifier_features, load_classifier

    from .evaluate import CLASSIFIER_FOLDER

    net = load_classifier(Path(model_root) / CLASSIFIER_FOLDER, device=device)
    decode = loaded.decode if loaded.latent else None

    def features(x: Tensor) -> Tensor:
        return classifier_features(net, decode(x) if decode else x)

    return features


def prepare_job(
    loaded: LoadedModel, *, loss: str = "lpips", guidance: float | None = None, prompts: Sequence[str] | None = None,
    class_labels: Sequence[int] | None = None, device: torch.device | str = "cpu",
    model_root: str | os.PathLike | None = None,
) -> JobInputs:
    """LD3 inputs for ``loaded`` (already on ``device``): the (conditional) denoiser, the sampled
    shape (latent for latent models), the per-sample loss (after decoding latents; LPIPS repeats
    one channel to three and upsamples images below 32 px itself), the condition function of
    seeds, whether the latent recipe applies and, with ``model_root``, the guard's feature map.
    Raises ``ValueError`` naming the option that does not fit."""
    _check_options(loaded, guidance, prompts, class_labels)
    return JobInputs(
        denoiser=_denoiser(loaded, guidance),
        sample_shape=loaded.sample_shape,
        loss_fn=make_loss(loss, device=device, decode=loaded.decode if loaded.latent else None),
        conditions=conditions_for(loaded, prompts=prompts, class_labels=class_labels, device=device),
        latent=loaded.latent,
        features=None if model_root is None else guard_features(loaded, model_root, device),
    )


def run_model_job(
    loaded: LoadedModel, cfg: JobConfig, *, guidance: float | None = None, prompts: Sequence[str] | None = None,
    class_labels: Sequence[int] | None = None, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
    on_progress: Callable[[Progress], None] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: dict[str, Any] | None = None,
    model_root: str | os.PathLike | None = None,
    graphs: bool = False,
) -> JobResult:
    """``run_job`` for a catalog model, with the loss named by ``cfg.ld3.loss`` and, given
    ``model_root``, the guard's feature map the catalog names: what the worker runs for a job
    (``worker.runner``). Build ``cfg`` with ``worker.options.job_config(..., latent=loaded.latent)``
    or ``cfg.ld3`` with ``prepare_job(...).ld3_config(...)`` to get a latent model's recipe."""
    inputs = prepare_job(loaded, loss=cfg.ld3.loss, guidance=guidance, prompts=prompts, class_labels=class_labels, device=device,
                         model_root=model_root)
    return run_job(inputs.denoiser, inputs.sample_shape, cfg, inputs.loss_fn, device=device, dtype=dtype,
                   conditions=inputs.conditions, features=inputs.features, on_progress=on_progress, on_checkpoint=on_checkpoint,
                   should_stop=should_stop, resume=resume, graphs=graphs)


def _labels(loaded: LoadedModel, labels: Sequence[int] | Tensor, n: int, device: torch.device | str) -> Tensor:
    if loaded.conditioning != "class":
        raise ValueError(f"labels: model {loaded.spec.key!r} is not class-conditional")
    lab = torch.as_tensor(labels, device=device)
    if lab.shape != (n,) or lab.dtype.is_floating_point:
        raise ValueError(f"labels: need {n} integer labels, one per seed, got {lab.dtype} {tuple(lab.shape)}")
    if bool((lab < 0).any()) or bool((lab >= loaded.spec.num_classes).any()):
        raise ValueError(f"labels: must lie in 0..{loaded.spec.num_classes - 1}")
    return lab.long()


@torch.no_grad()
def generate(
    loaded: LoadedModel, solver: str, t_steps: Tensor, t_model: Tensor | None, seeds: Sequence[int], *,
    guidance: float | None = None, prompts: Sequence[str] | None = None, labels: Sequence[int] | Tensor | None = None,
    class_labels: Sequence[int] | None = None, batch_size: int = 64, device: torch.device | str = "cpu",
    final: str = "sigma_min",
) -> Tensor:
    """Images (n, *image_shape) in [-1, 1] on the CPU, sampled with ``solver`` on ``t_steps``
    (network times ``t_model``; None: the same) from the prior noise of ``seeds``, the last step
    ending under the ``final`` rule (``ld3core.solvers.final_grid``).

    Sample i depends only on ``seeds[i]`` and its condition (``labels[i]`` if given, else the
    seed's own from ``prompts`` / ``class_labels``, as in a job), never on the batch. Latent
    models are decoded with their VAE.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size: must be >= 1, got {batch_size}")
    if len(seeds) == 0:
        raise ValueError("seeds: need at least one")
    _check_options(loaded, guidance, prompts, class_labels)
    if labels is not None and class_labels is not None:
        raise ValueError("labels: give per-seed labels or the job's class_labels, not both")
    denoiser = _denoiser(loaded, guidance)
    x_T = prior_noise(seeds, loaded.sample_shape, loaded.schedule.sigma_T, device=device)
    if labels is not None:
        cond: Tensor | None = _labels(loaded, labels, len(seeds), device)
    else:
        fn = conditions_for(loaded, prompts=prompts, class_labels=class_labels, device=device)
        cond = None if fn is None else fn(list(seeds))
    t_steps = torch.as_tensor(t_steps, dtype=torch.float64).to(device)
    t_model = None if t_model is None else torch.as_tensor(t_model, dtype=torch.float64).to(device)
    fn_solve, out = get_solver(solver).ending(final), []
    for i in range(0, len(seeds), batch_size):
        den = conditioned(denoiser, None if cond is None else cond[i : i + batch_size])
        x0 = fn_solve(den, x_T[i : i + batch_size], t_steps, t_model)
        images = loaded.decode(x0) if loaded.latent else x0
        out.append(images.clamp(-1, 1).cpu())
    return torch.cat(out)
