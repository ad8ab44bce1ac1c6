"""Sample quality of a learned schedule next to every heuristic, on the same seeds (``ld3 evaluate``).

For one model, solver and NFE, every schedule (the learned one, if given, and each heuristic of
``ld3core.heuristics``) generates the same ``n_samples`` images from the same per-sample noise
seeds; so does the teacher (``TeacherSpec``, default UniPC at NFE 20 on logSNR steps).
Metrics, each optional:
- ``fd_digits``: Frechet distance in the features of the shipped digit classifier
  (``ld3core.classifier``) to the sklearn digits;
- ``fid``: FID with the standard Inception features (``ld3core.fid``) to the same digits at
  the model's resolution;
- ``lpips_teacher``: LPIPS-VGG between each sample and the teacher's sample from the same
  noise (mean ± sem).
The real data's statistics are cached (``ld3core.feature_stats``).

    ld3 evaluate --model ddpm-digits --solver unipc --nfe 5 [--schedule result.json] [--n 1000]
                 [--seed 0] [--metrics fd_digits fid lpips_teacher] [--json OUT]
"""

from __future__ import annotations

import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from ld3core.classifier import CLASSIFIER_SHA256, classifier_features, load_classifier
from ld3core.config import EVAL_METRICS as METRICS
from ld3core.feature_stats import FeatureStats, reference_stats
from ld3core.heuristics import HEURISTICS, heuristic
from ld3core.solvers import SOLVERS, get_solver
from ld3core.teacher import TeacherSpec
from registry.catalog import ModelSpec

from .digits import real_digits
from .loaders import LoadedModel
from .sampling import generate

DATASET = "sklearn-digits"
CLASSIFIER_FOLDER = "digits-classifier"  # under the model root
EVAL_SEED_BASE = 2**40  # disjoint from every LD3 job's pair seeds (job seed * 10_000_019 + i)
SEED_STRIDE = 1_000_003
DEFAULT_TEACHER = TeacherSpec()  # frozen: one shared default is safe


def eval_seeds(seed: int, n: int) -> list[int]:
    """The ``n`` per-sample noise seeds of evaluation run ``seed``; the same for every schedule."""
    if n < 2 or n >= SEED_STRIDE:
        raise ValueError(f"n_samples: must be in [2, {SEED_STRIDE}), got {n}")
    base = EVAL_SEED_BASE + seed * SEED_STRIDE
    return list(range(base, base + n))


class Scorer:
    """Loaded feature networks and the real data's reference statistics, reused across calls."""

    def __init__(self, metrics: Sequence[str], *, model_root: str | os.PathLike, device: str = "cpu",
                 batch_size: int = 256) -> None:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown or not metrics:
            raise ValueError(f"metrics: unknown {unknown}; choose from {METRICS}")
        self.metrics, self.device, self.batch_size = tuple(metrics), device, batch_size
        self.classifier = load_classifier(Path(model_root) / CLASSIFIER_FOLDER, device=device) if "fd_digits" in metrics else None
        self.lpips = None
        if "lpips_teacher" in metrics:
            from ld3core.lpips import LPIPS

            self.lpips = LPIPS("vgg").to(device)
        self._fid_ref: dict[int, FeatureStats] = {}

    def digits_reference(self) -> FeatureStats:
        return reference_stats("digits-classifier", CLASSIFIER_SHA256, DATASET, 16,
                               lambda: classifier_features(self.classifier, real_digits(16).to(self.device)))

    def fid_reference(self, resolution: int) -> FeatureStats:
        from ld3core.fid import INCEPTION_SHA256, inception_features

        if resolution not in self._fid_ref:
            self._fid_ref[resolution] = reference_stats(
                "inception-fid", INCEPTION_SHA256, DATASET, resolution,
                lambda: inception_features(real_digits(resolution), device=self.device, batch_size=self.batch_size))
        return self._fid_ref[resolution]

    def score(self, images: Tensor, teacher: Tensor | None) -> dict[str, float]:
        """Every metric of ``images`` (n, C, H, W) in [-1, 1]; ``teacher``: same-noise teacher samples."""
        out: dict[str, float] = {}
        if "fd_digits" in self.metrics:
            f = classifier_features(self.classifier, images.to(self.device))
            out["fd_digits"] = FeatureStats.of(f).frechet(self.digits_reference())
        if "fid" in self.metrics:
            from ld3core.fid import inception_features

            f = inception_features(images, device=self.device, batch_size=self.batch_size)
            out["fid"] = FeatureStats.of(f).frechet(self.fid_reference(images.shape[-1]))
        if "lpips_teacher" in self.metrics and teacher is not None:
            d = torch.cat([self.lpips(images[i : i + self.batch_size].to(self.device),
                                      teacher[i : i + self.batch_size].to(self.device)).double().cpu()
                           for i in range(0, images.shape[0], self.batch_size)])
            out["lpips_teacher"] = float(d.mean())
            out["lpips_teacher_sem"] = float(d.std() / math.sqrt(d.numel()))
        return out


@dataclass
class EvalTable:
    """One evaluation: a row per schedule (``ld3``, each heuristic, ``teacher``), same seeds."""

    model: str
    solver: str
    nfe: int
    n_samples: int
    seed: int
    teacher: dict[str, Any]
    rows: list[dict[str, Any]]  # name, t_steps, t_model, and the metric values
    timings: dict[str, float] = field(default_factory=dict)
    samples: dict[str, Tensor] = field(default_factory=dict, repr=False)  # first k images per schedule

    def row(self, name: str) -> dict[str, Any]:
        return next(r for r in self.rows if r["name"] == name)

    def best_heuristic(self, metric: str) -> str:
        """The heuristic with the lowest ``metric`` on these samples (an oracle choice)."""
        return min((r for r in self.rows if r["name"] in HEURISTICS), key=lambda r: r[metric])["name"]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("samples")
        return d

    def markdown(self) -> str:
        metrics = [m for m in METRICS if any(m in r for r in self.rows)]
        heads = {"fd_digits": "FD-digits", "fid": "FID", "lpips_teacher": "LPIPS to teacher"}
        t = self.teacher
        lines = [f"{self.model}, {self.solver} at NFE {self.nfe}: {self.n_samples} samples per schedule from the same "
                 f"noise seeds (run {self.seed}); teacher {t['solver']} NFE {t['nfe']} ({t['heuristic']} steps)", "",
                 "| schedule | " + " | ".join(heads[m] for m in metrics) + " |",
                 "|---|" + "---|" * len(metrics)]
        for r in self.rows:
            cells = []
            for m in metrics:
                if m == "lpips_teacher":
                    cells.append(f"{r[m]:.4f} ± {r[m + '_sem']:.4f}" if m in r else "-")
                else:
                    cells.append(f"{r[m]:.3f}" if m in r else "-")
            lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
        return "\n".join(lines)


def evaluate(
    loaded: LoadedModel, solver: str, nfe: int, learned: tuple[Tensor, Tensor] | None, *,
    n_samples: int = 1000, seed: int = 0, metrics: Sequence[str] = METRICS, teacher: TeacherSpec = DEFAULT_TEACHER,
    model_root: str | os.PathLike = "models", scorer: Scorer | None = None, guidance: float | None = None,
    prompts: Sequence[str] | None = None, batch_size: int = 256, device: str = "cpu", keep_samples: int = 0,
    teacher_images: Tensor | None = None,
) -> EvalTable:
    """Compare ``learned`` (t_steps, t_model) with every heuristic on the same ``n_samples`` seeds.

    Conditional models get each seed's own condition (``worker.sampling``: class ``seed mod
    num_classes``, balanced like the real data; or ``prompts``). ``scorer``
    reuses loaded networks across calls; ``keep_samples`` keeps the first k images of each
    schedule in ``EvalTable.samples`` (for sample grids). ``teacher_images``: the teacher's
    samples of these seeds (``teacher_samples``), when the caller already has them."""
    if solver not in SOLVERS:
        raise ValueError(f"solver: unknown {solver!r}; known: {sorted(SOLVERS)}")
    n = SOLVERS[solver].steps_for_nfe(nfe)
    scorer = scorer or Scorer(metrics, model_root=model_root, device=device, batch_size=batch_size)
    seeds = eval_seeds(seed, n_samples)
    sch = loaded.schedule

    def sample(sv: str, t: Tensor, tc: Tensor | None) -> Tensor:
        return generate(loaded, sv, t, tc, seeds, guidance=guidance, prompts=prompts, batch_size=batch_size, device=device)

    schedules: list[tuple[str, Tensor, Tensor | None]] = []
    if learned is not None:
        t_steps, t_model = (torch.as_tensor(v, dtype=torch.float64) for v in learned)
        if t_steps.shape != (n + 1,) or t_model.shape != (n + 1,):
            raise ValueError(f"learned schedule: {solver} at NFE {nfe} takes {n} steps, so t_steps and t_model need "
                             f"{n + 1} times; got {tuple(t_steps.shape)} and {tuple(t_model.shape)}")
        schedules.append(("ld3", t_steps, t_model))
    schedules += [(h, heuristic(h, sch, n), None) for h in HEURISTICS]

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    t_teach = heuristic(teacher.heuristic, sch, get_solver(teacher.solver).steps_for_nfe(teacher.nfe))
    if teacher_images is None:
        teach = sample(teacher.solver, t_teach, None)
    elif teacher_images.shape[0] != n_samples:
        raise ValueError(f"teacher_images: {teacher_images.shape[0]} images for {n_samples} samples")
    else:
        teach = teacher_images
    timings["teacher_s"] = time.perf_counter() - t0
    rows, samples, t_sample, t_score = [], {}, 0.0, 0.0
    for name, t, tc in schedules:
        t0 = time.perf_counter()
        images = sample(solver, t, tc)
        t1 = time.perf_counter()
        rows.append({"name": name, "t_steps": t.tolist(), "t_model": (tc if tc is not None else t).tolist(),
                     **scorer.score(images, teach)})
        t_sample, t_score = t_sample + t1 - t0, t_score + time.perf_counter() - t1
        if keep_samples:
            samples[name] = images[:keep_samples]
    t0 = time.perf_counter()
    rows.append({"name": "teacher", "t_steps": t_teach.tolist(), "t_model": t_teach.tolist(),
                 **scorer.score(teach, None)})
    if keep_samples:
        samples["teacher"] = teach[:keep_samples]
    timings.update(sampling_s=t_sample, metrics_s=t_score + time.perf_counter() - t0)
    return EvalTable(loaded.spec.key, solver, nfe, n_samples, seed, asdict(teacher), rows, timings, samples)


def teacher_samples(loaded: LoadedModel, *, n_samples: int, seed: int = 0, teacher: TeacherSpec = DEFAULT_TEACHER,
                    guidance: float | None = None, prompts: Sequence[str] | None = None, batch_size: int = 256,
                    device: str = "cpu") -> Tensor:
    """The teacher's samples of evaluation run ``seed``: what ``evaluate`` compares with, reusable
    across solvers and NFEs of one model."""
    t = heuristic(teacher.heuristic, loaded.schedule, get_solver(teacher.solver).steps_for_nfe(teacher.nfe))
    return generate(loaded, teacher.solver, t, None, eval_seeds(seed, n_samples), guidance=guidance, prompts=prompts,
                    batch_size=batch_size, device=device)


def read_catalog(model_root: str | os.PathLike) -> dict[str, ModelSpec]:
    """``<model_root>/catalog.json`` as {key: ModelSpec}."""
    path = Path(model_root) / "catalog.json"
    if not path.is_file():
        raise ValueError(f"--model-root: {path} does not exist")
    return {d["key"]: ModelSpec.from_dict(d) for d in json.loads(path.read_text())}


def read_schedule(path: str | os.PathLike, solver: str, nfe: int) -> tuple[Tensor, Tensor]:
    """The learned (t_steps, t_model) of an ``ld3 optimize --out`` file, checked against solver/NFE."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--schedule: cannot read {path}: {e}") from None
    ld3 = d.get("config", {}).get("ld3", {})
    for name, want in (("solver", solver), ("nfe", nfe)):
        if name in ld3 and ld3[name] != want:
            raise ValueError(f"--schedule: {path} was learned for {name} {ld3[name]!r}, not {want!r}")
    keys = ("learned_t_steps", "learned_t_model") if "learned_t_steps" in d else ("t_steps", "t_model")
    if not all(k in d for k in keys):
        raise ValueError(f"--schedule: {path} has no learned_t_steps/learned_t_model (nor t_steps/t_model)")
    return torch.tensor(d[keys[0]], dtype=torch.float64), torch.tensor(d[keys[1]], dtype=torch.float64)
