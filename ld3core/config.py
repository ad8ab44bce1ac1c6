"""The configuration of an LD3 job: frozen, typed objects, saved as JSON next to every result.

The one place for every default: ``LD3Config`` (the training), ``TeacherSpec`` (the teacher
pairs) and ``JobConfig`` (a whole job). Defaults are the paper's pixel-space recipe (App.
B.1.1); ``LATENT_RECIPE`` (``LD3Config.latent()``) holds where the latent-space one differs
(App. B.1.2). Learning rates marked "/NFE" are divided by the NFE budget.

A job's options, as ``POST /jobs`` and ``ld3 optimize`` take them, are these fields under flat
names (``OPTIONS``: ``teacher_nfe`` for ``TeacherSpec.nfe``, ...); ``job_config`` builds the
JobConfig of a job from the options given, every other field keeping its default here.

This module imports no torch, so that the API reads the options and their defaults
(``registry.schemas.JobOptions``) without loading the library; the solver table that checks a
solver's name and step count is imported when a config is built.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Mapping, get_type_hints

LOSSES = ("lpips", "lpips_alex", "l2", "l1")
MODES = ("time", "lambda")  # the parameterization of the step times (ld3core.parameterization)
SELECT_ON = ("hard", "soft")
FINALS = ("sigma_min", "zero")  # how a schedule's last step ends (ld3core.solvers.final_grid)
HEURISTIC_NAMES = ("time_uniform", "time_quadratic", "logsnr", "edm")  # ld3core.heuristics.HEURISTICS, in order
EVAL_METRICS = ("fd_digits", "fid", "lpips_teacher")  # the sample-quality metrics of worker.evaluate (`ld3 evaluate`)



@dataclass(frozen=True)
class Consumer:
    """A sampler that runs served schedules, and what of a schedule it can run (issue 12)."""

    name: str
    decoupled: bool  # evaluates the network at stored model times t_model != t_steps
    final: str | None  # the last step it takes (FINALS); None: the schedule's own rule
    integer_timesteps: bool  # VP discrete: it rounds the step times to integer training steps
    solvers: tuple[str, ...] | None  # the solvers it runs as ld3core does; None: every one
    how: str
    # Where its step grid comes from when it cannot take decoupled times: "t_steps" (sigmas of the
    # step times) or "t_model" (stock diffusers on a VP-discrete model: its export's integer
    # ``timesteps`` are the network's times, from which the scheduler derives the step sigmas).
    grid: str = "t_steps"
    # On a rectified-flow model, the solvers it runs as ld3core does (None: the same as ``solvers``):
    # k-diffusion's samplers treat sigma as a VE sigma, which is ld3core's Euler on flow but not its
    # Heun (ours steps in sigma / alpha) nor its DPM-Solver++ (ours uses the flow's lambda).
    flow_solvers: tuple[str, ...] | None = None


# The one table of consumers: the job option ``target`` names one (LD3 learns under its limits),
# the job measures every served schedule in each one's form (``ld3core.consumers``), the exports
# say which forms are exact. "ld3": our samplers (ld3core; client.diffusers_scheduler, a diffusers
# SchedulerMixin; client.k_diffusion, a k-diffusion-style sampler), which run anything stored.
CONSUMERS: dict[str, Consumer] = {c.name: c for c in (
    Consumer("ld3", True, None, False, None,
             "ld3core, client.diffusers_scheduler.LD3Scheduler or client.k_diffusion: the stored schedule as it is"),
    # UniPC is left out: diffusers' UniPCMultistepScheduler takes custom steps only as flow sigmas.
    Consumer("diffusers", False, "zero", True, ("euler", "heun", "dpmpp_2m", "dpmpp_3m"),
             "a stock diffusers scheduler through client.apply_schedule: the network's time follows the step "
             "(no decoupled times), VP-discrete timesteps are integers, the last step lands on sigma = 0", grid="t_model"),
    Consumer("k-diffusion", False, "zero", False, ("euler", "heun", "dpmpp_2m"),
             "k-diffusion's sample_euler / sample_heun / sample_dpmpp_2m on the export's sigmas: the network's "
             "time follows sigma, the last step lands on sigma = 0", flow_solvers=("euler",)),
    Consumer("comfyui", False, "zero", False, ("euler", "heun", "dpmpp_2m"),
             "ComfyUI's ManualSigmas with the euler / heun / dpmpp_2m sampler: as k-diffusion", flow_solvers=("euler",)),
)}
TARGETS = tuple(CONSUMERS)


def target_constraints(target: str) -> dict[str, Any]:
    """The LD3Config fields a job learning for ``target`` must have (ValueError for an unknown target)."""
    if target not in CONSUMERS:
        raise ValueError(f"target: unknown consumer {target!r}; known: {list(TARGETS)}")
    c = CONSUMERS[target]
    return {**({} if c.decoupled else {"decoupled": False}), **({} if c.final is None else {"final": c.final})}


# Where the paper's latent-space recipe differs from the pixel-space one (App. B.1.2).
LATENT_RECIPE: dict[str, Any] = {"lr_xi": 1e-3, "lr_xic": 0.001, "phase2_epochs": 3}


def _solver_steps(solver: str, nfe: int) -> int:
    """Steps of ``solver`` at ``nfe`` (ValueError naming the known solvers for an unknown one)."""
    from .solvers import SOLVERS  # the solver functions, hence torch: only once a config is built

    if solver not in SOLVERS:
        raise ValueError(f"solver: unknown solver {solver!r}; known: {sorted(SOLVERS)}")
    return SOLVERS[solver].steps_for_nfe(nfe)


@dataclass(frozen=True)
class LD3Config:
    solver: str = "unipc"
    nfe: int = 5
    loss: str = "lpips"
    mode: str = "time"  # "time" or "lambda" parameterization
    decoupled: bool = True  # learn the model-input times xi^c
    soft: bool = True  # soft teacher forcing (x'_T moves in the r-ball); False = hard loss
    gamma: float = 0.001  # r = gamma * d / NFE^2, ball radius r * sigma_T
    batch_size: int = 2
    phase1_epochs: int = 2  # xi^c frozen
    phase2_epochs: int = 5  # joint
    lr_xi: float = 5e-3  # RMSprop
    lr_xic: float = 0.1  # SGD, /NFE
    lr_x: float = 12.0  # SGD on x'_T, /NFE
    momentum: float = 0.9
    clip: float = 1.0
    patience: int = 5  # iterations without validation improvement before a decay
    factor: float = 0.8
    min_lr_xi: float = 5e-5
    min_lr_xic: float = 1e-6
    val_every: int = 5  # validate every k iterations and at every epoch end
    select_on: str = "hard"  # checkpoint selection: "hard" (from x_T) or "soft" (authors)
    restore: bool = True  # on a plateau and at each epoch start, go back to the best state (authors; measured: README)
    accept_moves: bool = False  # keep a moved x'_T only where its loss fell; halve lr_x after a still epoch (authors)
    remat: bool = True
    val_batch_size: int = 64
    seed: int = 0
    # The sampler's last step, which LD3 learns with: "sigma_min" ends at t_min (today's rule, the
    # default), "zero" lands on the data prediction at sigma = 0 (ld3core.solvers.final_grid).
    final: str = "sigma_min"
    # The sampler the schedule is learned for (CONSUMERS): a stock one's limits hold during
    # training (``target_constraints``; integer VP timesteps with straight-through gradients).
    target: str = "ld3"

    @classmethod
    def latent(cls, **overrides: Any) -> "LD3Config":
        """The paper's latent-space recipe, ``overrides`` on top."""
        return cls(**{**LATENT_RECIPE, **overrides})

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"{name}: {why}")

        if self.nfe < 1:
            bad("nfe", f"must be >= 1, got {self.nfe}")
        steps = _solver_steps(self.solver, self.nfe)
        if steps < 2:
            bad("nfe", f"{self.solver} at NFE {self.nfe} takes {steps} step; a single step has no interior time to learn")
        if self.loss not in LOSSES:
            bad("loss", f"unknown loss {self.loss!r}; known: {list(LOSSES)}")
        if self.mode not in MODES:
            bad("mode", f"unknown mode {self.mode!r}; known: {list(MODES)}")
        if self.final not in FINALS:
            bad("final", f"unknown final step {self.final!r}; known: {list(FINALS)}")
        if self.select_on not in SELECT_ON:
            bad("select_on", "must be 'hard' or 'soft'")
        for name, value in target_constraints(self.target).items():
            if getattr(self, name) != value:
                bad(name, f"must be {value!r} for target {self.target!r}: {CONSUMERS[self.target].how}")
        runs = CONSUMERS[self.target].solvers
        if runs is not None and self.solver not in runs:
            bad("target", f"{self.target} runs {', '.join(runs)} as learned here, not {self.solver}; use target 'ld3' "
                          f"({CONSUMERS['ld3'].how})")
        for name in ("batch_size", "val_every", "val_batch_size", "patience"):
            if getattr(self, name) < 1:
                bad(name, "must be >= 1")
        for name in ("phase1_epochs", "phase2_epochs"):
            if getattr(self, name) < 0:
                bad(name, "must be >= 0")
        if self.phase1_epochs + self.phase2_epochs < 1:
            bad("phase2_epochs", "at least one epoch of training is needed")
        for name in ("lr_xi", "lr_xic", "lr_x", "clip", "gamma", "min_lr_xi", "min_lr_xic"):
            if not getattr(self, name) >= 0:
                bad(name, "must be a non-negative number")
        if not 0 < self.factor < 1:
            bad("factor", "must be in (0, 1)")

    @property
    def n_steps(self) -> int:
        return _solver_steps(self.solver, self.nfe)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LD3Config":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"unknown LD3 option(s): {sorted(unknown)}")
        return cls(**d)

    def but(self, **changes: Any) -> "LD3Config":
        return replace(self, **changes)


@dataclass(frozen=True)
class TeacherSpec:
    """The teacher that makes the training pairs: a solver at a high NFE on a heuristic schedule."""

    solver: str = "unipc"
    nfe: int = 20
    heuristic: str = "logsnr"


@dataclass(frozen=True)
class JobConfig:
    ld3: LD3Config = field(default_factory=LD3Config)
    teacher: TeacherSpec = field(default_factory=TeacherSpec)
    n_train: int = 50
    n_val: int = 50
    n_test: int = 300  # the guard's pairs: 100 missed a 21% better schedule (issue 10)
    heuristics: tuple[str, ...] = HEURISTIC_NAMES  # the job's candidates: scored, trained from, tested against
    starts: int = 3  # best heuristics (on validation) trained side by side
    init: str = "best"  # "best": the ``starts`` best heuristics; a heuristic's name: that one alone (authors: time_uniform)
    guard_z: float = 1.645  # one-sided z of both guard checks (ld3core.guard); 0: point estimates only
    batch_size: int = 64  # teacher and evaluation batches

    def __post_init__(self) -> None:
        object.__setattr__(self, "heuristics", tuple(self.heuristics))  # a JSON list arrives as a list
        for name in ("n_train", "n_val", "n_test", "starts", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}: must be >= 1")
        unknown = [h for h in self.heuristics if h not in HEURISTIC_NAMES]
        if unknown or not self.heuristics:
            raise ValueError(f"heuristics: unknown {unknown}; known: {sorted(HEURISTIC_NAMES)}")
        if self.init != "best" and self.init not in self.heuristics:
            raise ValueError(f"init: 'best' or one of the job's heuristics {list(self.heuristics)}; got {self.init!r}")
        if not self.guard_z >= 0:
            raise ValueError("guard_z: must be >= 0")
        if self.n_train < self.ld3.batch_size:
            raise ValueError(f"n_train: needs at least batch_size={self.ld3.batch_size} pairs")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["heuristics"] = list(self.heuristics)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "JobConfig":
        d = dict(d)
        ld3 = LD3Config.from_dict(d.pop("ld3", {}))
        teacher = TeacherSpec(**d.pop("teacher", {}))
        return cls(ld3=ld3, teacher=teacher, **d)

    def seeds(self) -> dict[str, list[int]]:
        """Disjoint sample seeds per split, derived from the job seed."""
        base = self.ld3.seed * 10_000_019
        n = (self.n_train, self.n_val, self.n_test)
        return {
            "train": list(range(base, base + n[0])),
            "val": list(range(base + n[0], base + n[0] + n[1])),
            "test": list(range(base + n[0] + n[1], base + sum(n))),
        }


# A job's options: every field of the three configs under one flat name.

@dataclass(frozen=True)
class Option:
    """One job option: its flat name, the config field it sets (``section``: "ld3", "teacher" or
    "job"), the field's type and default, and the latent recipe's default (the same where the
    recipes agree)."""

    name: str
    section: str
    field: str
    type: Any
    default: Any
    latent_default: Any

    @property
    def by_recipe(self) -> bool:
        """Whether the default depends on the model (pixel or latent recipe)."""
        return self.default != self.latent_default


KEY_FIELDS = ("solver", "nfe")  # LD3Config fields a job names beside its options: (model, solver, nfe) is its key
RENAMED = {("job", "batch_size"): "eval_batch_size"}  # LD3Config.batch_size is the training batch


def _options() -> dict[str, Option]:
    out: dict[str, Option] = {}
    sections = (("ld3", LD3Config, ""), ("teacher", TeacherSpec, "teacher_"), ("job", JobConfig, ""))
    for section, cls, prefix in sections:
        types = get_type_hints(cls)
        for f in fields(cls):
            if (cls is LD3Config and f.name in KEY_FIELDS) or (cls is JobConfig and f.name in ("ld3", "teacher")):
                continue
            name = RENAMED.get((section, f.name), prefix + f.name)
            assert name not in out, f"two options named {name!r}"
            latent = LATENT_RECIPE.get(f.name, f.default) if cls is LD3Config else f.default
            out[name] = Option(name, section, f.name, types[f.name], f.default, latent)
    return out


OPTIONS: dict[str, Option] = _options()


def job_config(solver: str, nfe: int, options: Mapping[str, Any] | None = None, *, latent: bool = False) -> JobConfig:
    """The JobConfig of a job on ``solver`` at ``nfe``: the ``options`` given (flat names; None
    leaves the default), every other field its default, the latent recipe's for ``latent``
    models. ValueError names an unknown option or a value the configs refuse."""
    options = dict(options or {})
    unknown = sorted(set(options) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown option(s): {unknown}; known: {sorted(OPTIONS)}")
    given: dict[str, dict[str, Any]] = {"ld3": {"solver": solver, "nfe": nfe}, "teacher": {}, "job": {}}
    for name, value in options.items():
        if value is not None:
            given[OPTIONS[name].section][OPTIONS[name].field] = value
    for name, value in target_constraints(given["ld3"].get("target", "ld3")).items():
        if given["ld3"].setdefault(name, value) != value:  # what the target implies, unless the job said otherwise
            raise ValueError(f"{name}: {given['ld3'][name]!r} conflicts with target {given['ld3']['target']!r}, which needs {value!r}")
    ld3 = LD3Config.latent(**given["ld3"]) if latent else LD3Config(**given["ld3"])
    return JobConfig(ld3=ld3, teacher=TeacherSpec(**given["teacher"]), **given["job"])


__all__ = [
    "LD3Config", "TeacherSpec", "JobConfig", "Option", "OPTIONS", "job_config", "LATENT_RECIPE", "LOSSES", "MODES",
    "SELECT_ON", "HEURISTIC_NAMES", "Consumer", "CONSUMERS", "TARGETS", "target_constraints",
]
