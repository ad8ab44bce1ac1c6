"""A whole LD3 job: teacher pairs -> heuristic starts -> training -> held-out test.

Beyond the paper's recipe (one start, checkpoint picked on 50 noisy validation pairs):
- every heuristic is scored on the validation pairs and the best ``starts`` of them are
  trained side by side; the start with the best validation loss is kept;
- a test split that neither training nor selection saw decides the result (``ld3core.guard``):
  the learned schedule is returned only if it is closer to the teacher than the best heuristic
  there beyond noise and, given a feature map, its samples' distribution is not further from
  the teacher's beyond noise; otherwise the job says so and returns that heuristic, with the
  figures.

The job's configuration (``JobConfig``, every default) lives in ``ld3core.config``.

Conditional models: ``conditions(seeds) -> Tensor`` gives each sample's condition as a pure
function of its seed (and the caller's job options), so that a resumed job recomputes the
same pairs; every pass over the pairs (teacher, scoring, training, test) uses them.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import torch
from torch import Tensor

from .config import CONSUMERS, JobConfig
from .consumers import form, is_exact, runs, snap_timesteps
from .denoisers import ConditionalDenoiser, Denoiser, conditioned
from .guard import Verdict, mean_sem, verdict
from .heuristics import heuristic
from .solvers import get_solver
from .teacher import Pairs, teacher_pairs
from .train import LossFn, Progress, TrainResult, train

Conditions = Callable[[Sequence[int]], Tensor]  # sample seeds -> per-sample conditions (n, ...)


@dataclass
class JobResult:
    t_steps: Tensor  # what to use: learned if it beat the best heuristic on test, else that heuristic
    t_model: Tensor
    source: str  # "ld3" or the heuristic's name
    learned_t_steps: Tensor
    learned_t_model: Tensor
    test: dict[str, dict[str, float]]  # "ld3", every heuristic, "ld3_minus_best" (paired): mean, sem
    guard: dict[str, Any]  # ld3core.guard.Verdict.to_dict()
    val: dict[str, float]  # every heuristic's validation loss, and ld3's (hard, soft)
    best_heuristic: str
    train: TrainResult
    timings: dict[str, float]
    config: dict[str, Any]
    message: str
    # Each consumer's form of the served schedule (config.CONSUMERS): exact, or its test loss and paired cost.
    consumers: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable report (times as lists of floats)."""
        return {
            "source": self.source, "message": self.message, "best_heuristic": self.best_heuristic,
            "t_steps": self.t_steps.tolist(), "t_model": self.t_model.tolist(),
            "learned_t_steps": self.learned_t_steps.tolist(), "learned_t_model": self.learned_t_model.tolist(),
            "test": self.test, "guard": self.guard, "val": self.val, "timings": self.timings, "config": self.config,
            "consumers": self.consumers,
            "train": {"iterations": self.train.iterations, "restores": self.train.restores,
                      "start": self.train.start, "history": self.train.history},
        }


def _clock(device: torch.device | str) -> float:
    """perf_counter after the device's queued work is done (phase timings on CUDA)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


Features = Callable[[Tensor], Tensor]  # samples (n, *sample_shape) -> feature vectors (n, D) for the guard's FD


@torch.no_grad()
def per_sample_losses(
    denoiser: Denoiser | ConditionalDenoiser, solver: str, t_steps: Tensor, t_model: Tensor | None, pairs: Pairs,
    loss_fn: LossFn, batch_size: int, final: str = "sigma_min",
) -> Tensor:
    """Loss of one discretization on every pair (under its own condition), batched, from the original x_T,
    its last step ending under the ``final`` rule (``ld3core.solvers.final_grid``)."""
    return losses_and_features(denoiser, solver, t_steps, t_model, pairs, loss_fn, batch_size, final=final)[0]


@torch.no_grad()
def losses_and_features(
    denoiser: Denoiser | ConditionalDenoiser, solver: str, t_steps: Tensor, t_model: Tensor | None, pairs: Pairs,
    loss_fn: LossFn, batch_size: int, features: Features | None = None, final: str = "sigma_min",
) -> tuple[Tensor, Tensor | None]:
    """``per_sample_losses`` and, given ``features``, the features of the same samples."""
    fn, out, feats = get_solver(solver).ending(final), [], []
    for i in range(0, len(pairs), batch_size):
        den = conditioned(denoiser, None if pairs.cond is None else pairs.cond[i : i + batch_size])
        x0 = fn(den, pairs.x_T[i : i + batch_size], t_steps, t_model)
        out.append(loss_fn(x0, pairs.x_0[i : i + batch_size]))
        if features is not None:
            feats.append(features(x0).double().cpu())
    return torch.cat(out), (torch.cat(feats) if features is not None else None)


@torch.no_grad()
def teacher_features(pairs: Pairs, features: Features, batch_size: int) -> Tensor:
    """Features of the teacher's samples of a split."""
    return torch.cat([features(pairs.x_0[i : i + batch_size]).double().cpu() for i in range(0, len(pairs), batch_size)])


def job_pairs(
    denoiser: Denoiser | ConditionalDenoiser, sample_shape: Sequence[int], cfg: JobConfig, *,
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
    on_progress: Callable[[Progress], None] | None = None, conditions: Conditions | None = None,
) -> dict[str, Pairs]:
    """Teacher pairs for the train, val and test splits of a job (batched, no autograd);
    ``conditions`` gives a conditional model's per-sample conditions from the split's seeds."""
    seeds, out, done = cfg.seeds(), {}, 0
    total = sum(len(v) for v in seeds.values())
    for name, split_seeds in seeds.items():
        def report(k: int, _: int, base: int = done) -> None:
            if on_progress:
                on_progress(Progress("teacher", base + k, total))

        cond = None if conditions is None else conditions(split_seeds)
        out[name] = teacher_pairs(denoiser, cfg.teacher, split_seeds, sample_shape, batch_size=cfg.batch_size,
                                  dtype=dtype, device=device, on_batch=report, cond=cond)
        done += len(split_seeds)
    return out


def held_out_test(
    denoiser: Denoiser | ConditionalDenoiser, cfg: JobConfig, cands: dict[str, Tensor], learned: tuple[Tensor, Tensor],
    pairs: Pairs, loss_fn: LossFn, *, features: Features | None = None,
    on_progress: Callable[[Progress], None] | None = None, per_sample: dict[str, Tensor] | None = None,
) -> tuple[dict[str, dict[str, float]], str, Verdict]:
    """Every heuristic (``cands``) and the learned (t_steps, t_model) on the test ``pairs``: their
    test losses (mean, sem; "ld3_minus_best": the paired difference), the best heuristic's name,
    and the guard's verdict (``ld3core.guard``) against it. ``per_sample``, if given, receives
    every schedule's per-sample losses."""
    todo = [(h, t, None) for h, t in cands.items()] + [("ld3", *learned)]
    per: dict[str, Tensor] = {} if per_sample is None else per_sample
    feats: dict[str, Tensor | None] = {}
    for i, (name, t, tc) in enumerate(todo):
        if on_progress:
            on_progress(Progress("evaluation", i, len(todo)))
        per[name], feats[name] = losses_and_features(denoiser, cfg.ld3.solver, t, tc, pairs, loss_fn, cfg.batch_size, features,
                                                     final=cfg.ld3.final)
    if on_progress:
        on_progress(Progress("evaluation", len(todo), len(todo)))
    test = {name: mean_sem(v) for name, v in per.items()}
    best_h = min(cands, key=lambda h: test[h]["mean"])
    trio = None if features is None else (feats["ld3"], feats[best_h], teacher_features(pairs, features, cfg.batch_size))
    v = verdict(per["ld3"], per[best_h], cfg.guard_z, features=trio, seed=cfg.ld3.seed)
    test["ld3_minus_best"] = v.loss
    return test, best_h, v


def consumer_costs(
    denoiser: Denoiser | ConditionalDenoiser, cfg: JobConfig, served: tuple[Tensor, Tensor], served_losses: Tensor,
    pairs: Pairs, loss_fn: LossFn, best_losses: Tensor | None = None,
) -> dict[str, dict[str, Any]]:
    """What each consumer (``config.CONSUMERS``) gets of the served (t_steps, t_model): whether it
    runs the job's solver, whether its form (``consumers.form``) is the schedule itself, and where
    it is not, that form's loss on the test ``pairs`` ("test"), its paired difference to the
    certified schedule's ``served_losses`` ("cost", > 0: worse) and, given the best heuristic's
    ``best_losses``, to that ("minus_best", > 0: the consumer would do better with the heuristic).
    Equal forms are measured once."""
    t, tc = served
    out: dict[str, dict[str, Any]] = {}
    measured: dict[tuple[Any, ...], dict[str, Any]] = {}
    for name in CONSUMERS:
        if not runs(name, cfg.ld3.solver, denoiser.schedule):
            out[name] = {"runs": False, "exact": False}
            continue
        f = form(name, denoiser.schedule, t, tc, cfg.ld3.final)
        if is_exact(f, t, tc, cfg.ld3.final):
            out[name] = {"runs": True, "exact": True}
            continue
        key = (tuple(f.t_steps.tolist()), tuple(f.t_model.tolist()), f.final)
        if key not in measured:
            per = per_sample_losses(denoiser, cfg.ld3.solver, f.t_steps, f.t_model, pairs, loss_fn, cfg.batch_size, f.final)
            measured[key] = {"test": mean_sem(per), "cost": mean_sem(per - served_losses.to(per))}
            if best_losses is not None:
                measured[key]["minus_best"] = mean_sem(per - best_losses.to(per))
        out[name] = {"runs": True, "exact": False, "final": f.final, **measured[key]}
    return out


def run_job(
    denoiser: Denoiser | ConditionalDenoiser,
    sample_shape: Sequence[int],
    cfg: JobConfig,
    loss_fn: LossFn,
    *,
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    on_progress: Callable[[Progress], None] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: dict[str, Any] | None = None,
    pairs: dict[str, Pairs] | None = None,
    conditions: Conditions | None = None,
    features: Features | None = None,
    graphs: bool = False,
) -> JobResult:
    """Run an LD3 job end to end. ``resume`` is a state handed to ``on_checkpoint`` earlier;
    ``pairs`` ("train", "val", "test") skips the teacher when the caller already has them;
    ``conditions`` (seeds -> per-sample conditions) is required for a conditional denoiser;
    ``features`` (samples -> feature vectors) adds the guard's distribution check; ``graphs``
    replays training iterations and validations as CUDA graphs on a CUDA device (``train``)."""
    ld3, sch, n = cfg.ld3, denoiser.schedule, cfg.ld3.n_steps
    timings: dict[str, float] = {}

    # Teacher pairs for the three splits (deterministic from the seeds: recomputed on resume).
    t0 = _clock(device)
    splits = pairs or job_pairs(denoiser, sample_shape, cfg, dtype=dtype, device=device, on_progress=on_progress,
                                conditions=conditions)
    timings["teacher_s"] = _clock(device) - t0

    # Starts: every heuristic scored on the validation pairs, the best ``starts`` kept.
    t0 = _clock(device)
    raw = {h: heuristic(h, sch, n).to(device) for h in cfg.heuristics}
    # What the target runs of each (integer VP timesteps for stock diffusers); training starts from the raw times.
    cands = {h: snap_timesteps(t, sch) if CONSUMERS[ld3.target].integer_timesteps else t for h, t in raw.items()}
    val_h = {h: float(per_sample_losses(denoiser, ld3.solver, t, None, splits["val"], loss_fn, cfg.batch_size, ld3.final).mean())
             for h, t in cands.items()}
    ranked = sorted(cands, key=lambda h: val_h[h] if math.isfinite(val_h[h]) else math.inf)
    chosen = ranked[: cfg.starts] if cfg.init == "best" else [cfg.init]
    timings["init_s"] = _clock(device) - t0

    tr = train(denoiser, splits["train"], splits["val"], torch.stack([raw[h] for h in chosen]), ld3, loss_fn,
               on_progress=on_progress, on_checkpoint=on_checkpoint, should_stop=should_stop, resume=resume, graphs=graphs)
    timings.update(tr.timings)
    if tr.stopped:
        raise JobStopped(tr)

    # Held-out test and the guard: the learned schedule against every heuristic on pairs nobody selected on.
    t0 = _clock(device)
    per: dict[str, Tensor] = {}
    test, best_h, v = held_out_test(denoiser, cfg, cands, (tr.t_steps.to(device), tr.t_model.to(device)), splits["test"],
                                    loss_fn, features=features, on_progress=on_progress, per_sample=per)
    figures = f"{test['ld3']['mean']:.5g} vs {test[best_h]['mean']:.5g}; {v.reason}"
    if v.serve_ld3:
        source, t_out, tc_out = "ld3", tr.t_steps, tr.t_model
        msg = f"LD3 beats the best heuristic ({best_h}): {figures}"
    else:
        source, t_out, tc_out = best_h, cands[best_h].cpu(), cands[best_h].cpu()
        msg = f"LD3 did not beat the best heuristic ({best_h}): {figures}; returning the heuristic"
    consumers = consumer_costs(denoiser, cfg, (t_out.to(device), tc_out.to(device)), per[source],
                               splits["test"], loss_fn, best_losses=per[best_h])
    timings["evaluation_s"] = _clock(device) - t0
    return JobResult(
        t_steps=t_out, t_model=tc_out, source=source, learned_t_steps=tr.t_steps, learned_t_model=tr.t_model,
        test=test, guard=v.to_dict(), val={**val_h, "ld3_hard": tr.val_hard, "ld3_soft": tr.val_soft},
        best_heuristic=best_h, train=tr, timings=timings, config=cfg.to_dict(), message=msg, consumers=consumers,
    )


class JobStopped(Exception):
    """Raised when ``should_stop`` ended training; ``.result`` holds the partial TrainResult."""

    def __init__(self, result: TrainResult) -> None:
        super().__init__("LD3 job stopped on request")
        self.result = result
