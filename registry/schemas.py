"""Pydantic schemas shared by the API and the worker, split by role (``*Create`` in, ``*Public`` out).

Every field is validated here with a message naming the reason (pydantic's ``loc`` names the
field). What needs the database is checked by the API, not here: that the model exists in
the catalog, and that guidance, class labels or prompts are only given for models
conditioned on classes or text (``ModelRow.spec["conditioning"]``).
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)

from ld3core.config import CONSUMERS, FINALS, OPTIONS, SELECT_ON, TARGETS, Option, target_constraints

from . import noise_schedules, solvers
from .catalog import (
    ARCHITECTURES,
    BUILTIN,
    FROM_SCHEDULER_CONFIG,
    MAX_CLASSES,
    MAX_SHAPE_DIMS,
    MAX_SHAPE_SIZE,
    PREDICTIONS,
    SHA256_PATTERN,
    ModelSpec,
)
from .solvers import HEURISTIC_NAMES, LOSSES, MODES
from .tables import ApiKeyRow, JobEventRow, JobRow, ModelRow, ScheduleVersionRow

MODEL_KEY_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,127}$"  # registry.catalog's key rule
SCOPES: tuple[str, ...] = ("schedules:read", "jobs:submit", "admin")
EXPORT_FORMATS: tuple[str, ...] = ("raw", "diffusers", "k-diffusion", "comfyui")
MAX_SAMPLES = 10_000
INT32_MAX = 2**31 - 1  # INTEGER columns: ids, version numbers, seeds
INT64_MAX = 2**63 - 1  # the widest integer either database takes (PostgreSQL BIGINT and OFFSET, SQLite)
MAX_SEED = INT32_MAX  # stored in a 32-bit integer column
# Upper bounds of the numeric LD3 options: far above the paper's values, yet finite, so that the
# worker's arithmetic stays finite (a learning rate / NFE held even in float16, whose largest value
# is 65504; the soft-teacher ball radius gamma * d / NFE^2 * sigma_T in float32).
MAX_LEARNING_RATE = 1e4  # lr_xi, lr_xic, lr_x, min_lr_xi, min_lr_xic (the paper's largest: lr_x = 12)
MAX_GAMMA = 10.0  # the paper's: 0.001
MAX_CLIP = 1e6  # gradient-norm clip; the paper's: 1
MAX_GUARD_Z = 100.0  # the test guard's z; the default 1.645 is a one-sided 95% bound
MAX_ITERATIONS = 1_000_000  # patience and val_every, counted in training iterations

ModelKey = Annotated[str, Field(pattern=MODEL_KEY_PATTERN, description="catalog key")]
FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
Scope = Literal["schedules:read", "jobs:submit", "admin"]
ExportFormat = Literal["raw", "diffusers", "k-diffusion", "comfyui"]
Prompt = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2000)]
# Names checked with messages that list the known ones; the schema lists them as an enum.
KnownSolver = Annotated[str, AfterValidator(solvers.check_solver), Field(json_schema_extra={"enum": list(solvers.SOLVER_NAMES)})]
KnownHeuristic = Annotated[str, AfterValidator(solvers.check_heuristic), Field(json_schema_extra={"enum": list(HEURISTIC_NAMES)})]


def refuse_nul(value: str) -> str:
    """``value`` unless it holds a NUL character, which PostgreSQL text cannot store (a 500, not a 422)."""
    if "\x00" in value:
        raise ValueError("must not contain a NUL character")
    return value


# After any string constraints: Annotated[str, StringConstraints(...), NoNul] keeps their messages.
NoNul = AfterValidator(refuse_nul)

# LD3 options. Their names, types and defaults are ld3core's (``ld3core.config.OPTIONS``: one
# default per field, the same for a job submitted here and for ``ld3 optimize``); what follows is
# what a remote caller may ask for. Options whose values are names, checked against the known
# ones and listed as enums in the schema:
NAMED_OPTIONS: dict[str, Any] = {
    "loss": Literal[LOSSES],
    "mode": Literal[MODES],
    "select_on": Literal[SELECT_ON],
    "final": Literal[FINALS],
    "target": Literal[TARGETS],
    "teacher_solver": KnownSolver,
    "teacher_heuristic": KnownHeuristic,
    "heuristics": list[KnownHeuristic],
    "init": Annotated[str, Field(json_schema_extra={"enum": ["best", *HEURISTIC_NAMES]})],
}
# Limits and documentation (pydantic ``Field`` arguments). Every number needs finite bounds
# (tests/registry/test_registry_schemas.py); a float option never takes NaN or infinities.
OPTION_LIMITS: dict[str, dict[str, Any]] = {
    "gamma": dict(ge=0, le=MAX_GAMMA, description=f"soft-teacher ball radius r = gamma * d / NFE^2; at most {MAX_GAMMA:g}"),
    "batch_size": dict(ge=1, le=1024, description="training batch (pairs per iteration)"),
    "phase1_epochs": dict(ge=0, le=1000, description="epochs with the model-input times frozen"),
    "phase2_epochs": dict(ge=0, le=1000, description="epochs learning both"),
    "lr_xi": dict(ge=0, le=MAX_LEARNING_RATE,
                  description=f"RMSprop learning rate of the step times; at most {MAX_LEARNING_RATE:g}"),
    "lr_xic": dict(ge=0, le=MAX_LEARNING_RATE, description=f"SGD learning rate of the model-input times, divided by "
                                                           f"the NFE; at most {MAX_LEARNING_RATE:g}"),
    "lr_x": dict(ge=0, le=MAX_LEARNING_RATE, description=f"SGD learning rate of the moved noise x'_T, divided by the "
                                                         f"NFE; at most {MAX_LEARNING_RATE:g}"),
    "momentum": dict(ge=0, lt=1),
    "clip": dict(ge=0, le=MAX_CLIP, description=f"gradient-norm clip of the step times; at most {MAX_CLIP:g}"),
    "patience": dict(ge=1, le=MAX_ITERATIONS, description=f"iterations without validation improvement before a decay; "
                                                          f"at most {MAX_ITERATIONS}"),
    "factor": dict(gt=0, lt=1),
    "min_lr_xi": dict(ge=0, le=MAX_LEARNING_RATE, description=f"floor of lr_xi's decay; at most {MAX_LEARNING_RATE:g}"),
    "min_lr_xic": dict(ge=0, le=MAX_LEARNING_RATE, description=f"floor of lr_xic's decay; at most {MAX_LEARNING_RATE:g}"),
    "val_every": dict(ge=1, le=MAX_ITERATIONS, description=f"validate every k iterations (and at every epoch end); "
                                                           f"at most {MAX_ITERATIONS}"),
    "val_batch_size": dict(ge=1, le=4096),
    "seed": dict(ge=0, le=MAX_SEED),
    "teacher_nfe": dict(ge=1, le=1000),
    "n_train": dict(ge=1, le=MAX_SAMPLES),
    "n_val": dict(ge=1, le=MAX_SAMPLES),
    "n_test": dict(ge=1, le=MAX_SAMPLES),
    "heuristics": dict(min_length=1, max_length=len(HEURISTIC_NAMES), json_schema_extra={"uniqueItems": True}),
    "starts": dict(ge=1, le=len(HEURISTIC_NAMES), description="best heuristics (on validation) trained side by side"),
    "init": dict(description="'best': the `starts` best heuristics; a heuristic's name: that one alone"),
    "guard_z": dict(ge=0, le=MAX_GUARD_Z, description=f"the publish guard's one-sided z (LD3 must beat the best "
                                                      f"heuristic by z standard errors); at most {MAX_GUARD_Z:g}"),
    "eval_batch_size": dict(ge=1, le=4096, description="teacher and evaluation batch"),
}


def _option_field(option: Option) -> tuple[Any, Any]:
    """One LD3 option as a pydantic field: the API's type and limits, ld3core's default; None
    where the default is the model's recipe (pixel or latent), which the worker picks."""
    kind = NAMED_OPTIONS.get(option.name, option.type)
    limits = dict(OPTION_LIMITS.get(option.name, {}))
    if option.type is float:
        limits.setdefault("allow_inf_nan", False)
    if option.by_recipe:
        recipe = (f"default: {option.default:g} for pixel-space models, {option.latent_default:g} for latent ones "
                  f"(the paper's recipes)")
        limits["description"] = "; ".join(filter(None, (limits.get("description"), recipe)))
        return Optional[kind], Field(None, **limits)
    default = list(option.default) if isinstance(option.default, tuple) else option.default
    return kind, Field(default, **limits)


class JobOptionRules(BaseModel):
    """The conditioning of a job and the rules across its LD3 options (``JobOptions`` adds the options)."""

    model_config = ConfigDict(extra="forbid")

    # Conditioning (checked against the model's conditioning by the API).
    guidance: float | None = Field(None, ge=0, le=100, allow_inf_nan=False, description="classifier-free guidance scale")
    class_labels: list[Annotated[int, Field(ge=0, le=MAX_CLASSES - 1)]] | None = Field(None, min_length=1,
                                                                                      max_length=MAX_SAMPLES)
    prompts: list[Prompt] | None = Field(None, min_length=1, max_length=MAX_SAMPLES)

    # A field validator sees the fields before it (``info.data``): ld3core.config orders the
    # options so that batch_size, heuristics and phase1_epochs come first.
    @field_validator("n_train", check_fields=False)
    @classmethod
    def _enough_train_pairs(cls, v: int, info: ValidationInfo) -> int:
        bs = info.data.get("batch_size")
        if bs is not None and v < bs:
            raise ValueError(f"needs at least batch_size={bs} training pairs, got {v}")
        return v

    @field_validator("heuristics", check_fields=False)
    @classmethod
    def _heuristics(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate heuristics in {v}")
        return v

    @field_validator("starts", check_fields=False)
    @classmethod
    def _starts(cls, v: int, info: ValidationInfo) -> int:
        hs = info.data.get("heuristics")
        if hs is not None and v > len(hs):
            raise ValueError(f"{v} starts but only {len(hs)} heuristics to start from")
        return v

    @field_validator("init", check_fields=False)
    @classmethod
    def _init(cls, v: str, info: ValidationInfo) -> str:
        hs = info.data.get("heuristics")
        if v != "best" and hs is not None and v not in hs:
            raise ValueError(f"init must be 'best' or one of the job's heuristics {hs}; got {v!r}")
        return v

    @field_validator("phase2_epochs", check_fields=False)
    @classmethod
    def _some_training(cls, v: int | None, info: ValidationInfo) -> int | None:
        if v is not None and v + (info.data.get("phase1_epochs") or 0) < 1:
            raise ValueError("phase1_epochs + phase2_epochs must be >= 1 (at least one epoch of training)")
        return v

    @model_validator(mode="after")
    def _one_kind_of_condition(self) -> "JobOptionRules":
        if self.class_labels is not None and self.prompts is not None:
            raise ValueError("class_labels and prompts: give one or the other, a model has one kind of conditioning")
        return self

    @model_validator(mode="after")
    def _target(self) -> "JobOptionRules":
        target = getattr(self, "target", None) or "ld3"
        for name, value in target_constraints(target).items():
            given = getattr(self, name, None)
            if name in self.model_fields_set and given != value:
                raise ValueError(f"{name}={given!r} conflicts with target {target!r}, which needs {value!r}: {CONSUMERS[target].how}")
        return self

    def ld3_options(self) -> dict[str, Any]:
        """The LD3 options, as ``ld3core.config.job_config`` takes them (None: the model's recipe);
        a field the job's ``target`` fixes (``target_constraints``) has the target's value unless given."""
        out = {name: getattr(self, name) for name in OPTIONS}
        for name, value in target_constraints(out.get("target") or "ld3").items():
            if name not in self.model_fields_set:
                out[name] = value
        return out


JobOptions = create_model(
    "JobOptions", __base__=JobOptionRules, __module__=__name__,
    __doc__="LD3 options of a job; every field optional, with ld3core's default (the paper's recipe). "
            "Where the paper's pixel and latent recipes differ (``ld3core.config.LATENT_RECIPE``), the default is "
            "None: the worker picks the model's.",
    **{name: _option_field(option) for name, option in OPTIONS.items()},
)


class JobCreate(BaseModel):
    """``POST /jobs``: learn a schedule for (model, solver, nfe)."""

    model_config = ConfigDict(extra="forbid")

    model: ModelKey
    solver: KnownSolver
    nfe: int = Field(ge=1, le=solvers.MAX_NFE)
    options: JobOptions = Field(default_factory=JobOptions)

    @field_validator("nfe")
    @classmethod
    def _nfe(cls, v: int, info: ValidationInfo) -> int:
        solver = info.data.get("solver")
        return v if solver is None else solvers.check_nfe(solver, v)

    @model_validator(mode="after")
    def _target_runs_the_solver(self) -> "JobCreate":
        target = getattr(self.options, "target", None) or "ld3"
        runs = CONSUMERS[target].solvers
        if runs is not None and self.solver not in runs:
            raise ValueError(f"options.target: {target} runs {', '.join(runs)} as learned here, not {self.solver}; "
                             f"target 'ld3' runs every solver ({CONSUMERS['ld3'].how})")
        return self


class JobProgress(BaseModel):
    phase: str | None = Field(description="teacher | training | evaluation while the job runs; a finished job keeps the "
                                          "phase it ended in (a failed or cancelled one: where it stopped)")
    done: int
    total: int
    loss_current: float | None
    loss_best: float | None
    eta_s: float | None = Field(description=(
        "Estimated seconds until the whole job ends (every remaining phase: the rest of the teacher pairs, scoring "
        "the heuristics, the remaining training iterations, the evaluation and the sample grid), not only the "
        "current phase. The worker counts the remaining work in network evaluations of one sample (a backward "
        "pass as two) and divides by the speed measured since the current phase began (before its first step, "
        "the previous phase's speed): loss and VAE costs are not counted, so during the teacher phase it is a "
        "rough guess that firms up once training runs. Null before any speed is measured and once the job ended."))
    heartbeat_at: dt.datetime | None


class JobEventPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    at: dt.datetime
    kind: str
    message: str
    data: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: JobEventRow) -> "JobEventPublic":
        return cls.model_validate(row)


class JobPublished(BaseModel):
    """The schedule version a succeeded job published: what it serves and how that compares."""

    version: int
    source: str = Field(description='what the version serves: "ld3" (the learned schedule) or the heuristic the '
                                    "test guard returned because LD3 did not beat it")
    val_loss: float | None = Field(description="the validation loss of what the version serves")
    quality: dict[str, Any] = Field(description="test losses of the learned schedule and of every heuristic, the best "
                                                "heuristic, and the learned minus the best (paired, mean and sem)")

    @classmethod
    def from_row(cls, row: ScheduleVersionRow) -> "JobPublished":
        return cls(version=row.version, source=row.source, val_loss=row.val_loss, quality=row.quality)


class JobPublic(BaseModel):
    """A job as the API shows it; ``events`` only where asked for (``GET /jobs/{id}``)."""

    id: str
    model: str
    solver: str
    nfe: int
    options: dict[str, Any]
    state: str
    progress: JobProgress
    attempts: int
    cancel_requested: bool
    worker: str | None
    error: str | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    schedule_version_id: int | None
    result: dict[str, Any] | None
    published: JobPublished | None = Field(description="the schedule version the job published (null until it succeeds)")
    curve: list[dict[str, Any]]
    events: list[JobEventPublic] | None = None

    @classmethod
    def from_row(cls, row: JobRow, events: list[JobEventRow] | None = None) -> "JobPublic":
        return cls(
            id=row.id, model=row.model_key, solver=row.solver, nfe=row.nfe, options=row.options, state=row.state,
            progress=JobProgress(phase=row.phase, done=row.progress_done, total=row.progress_total,
                                 loss_current=row.loss_current, loss_best=row.loss_best, eta_s=row.eta_s,
                                 heartbeat_at=row.heartbeat_at),
            attempts=row.attempts, cancel_requested=row.cancel_requested, worker=row.worker, error=row.error,
            created_at=row.created_at, started_at=row.started_at, finished_at=row.finished_at,
            schedule_version_id=row.schedule_version_id, result=row.result, curve=list(row.curve or []),
            published=None if row.schedule_version is None else JobPublished.from_row(row.schedule_version),
            events=None if events is None else [JobEventPublic.from_row(e) for e in events],
        )


class ScheduleVersionCreate(BaseModel):
    """A new immutable schedule version, as the worker hands it to ``jobs.finish_success``.

    ``t_steps``, ``t_model``, ``sigmas`` and ``model_timesteps`` each hold N+1 finite values,
    N the solver's step count at ``nfe``; ``t_steps`` strictly decreases.
    """

    model_config = ConfigDict(extra="forbid")

    model_key: ModelKey
    solver: KnownSolver
    nfe: int = Field(ge=1, le=solvers.MAX_NFE)
    guidance: float | None = Field(None, ge=0, allow_inf_nan=False)
    t_steps: list[FiniteFloat]
    t_model: list[FiniteFloat]
    time_space: str = Field(min_length=1, max_length=64)
    sigmas: list[FiniteFloat]
    model_timesteps: list[FiniteFloat]
    schedule_config: dict[str, Any]
    source: str = Field(min_length=1, max_length=32, description='"ld3" or the heuristic the guard returned')
    model_sha256: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    config: dict[str, Any]
    seed: int = Field(ge=0, le=MAX_SEED)
    code_version: str = Field(min_length=1, max_length=64)
    val_loss: float | None = Field(None, allow_inf_nan=False)
    quality: dict[str, Any]
    job_id: str | None = None
    samples_png: bytes | None = None

    @model_validator(mode="after")
    def _lengths(self) -> "ScheduleVersionCreate":
        n = solvers.steps_for_nfe(self.solver, self.nfe) + 1
        for name in ("t_steps", "t_model", "sigmas", "model_timesteps"):
            got = len(getattr(self, name))
            if got != n:
                raise ValueError(f"{name}: {self.solver} at NFE {self.nfe} takes {n - 1} steps, so {n} values; got {got}")
        t = self.t_steps
        if not all(a > b for a, b in zip(t[:-1], t[1:])):
            raise ValueError(f"t_steps: must strictly decrease, got {t}")
        return self


class ScheduleVersionPublic(BaseModel):
    id: int
    model: str
    solver: str
    nfe: int
    guidance: float | None
    version: int
    active: bool
    t_steps: list[float]
    t_model: list[float]
    time_space: str
    sigmas: list[float]
    model_timesteps: list[float]
    schedule_config: dict[str, Any]
    source: str
    model_sha256: str | None
    config: dict[str, Any]
    seed: int
    code_version: str
    val_loss: float | None
    quality: dict[str, Any]
    job_id: str | None
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: ScheduleVersionRow, *, active: bool = False) -> "ScheduleVersionPublic":
        return cls(
            id=row.id, model=row.model_key, solver=row.solver, nfe=row.nfe, guidance=row.guidance, version=row.version,
            active=active, t_steps=row.t_steps, t_model=row.t_model, time_space=row.time_space, sigmas=row.sigmas,
            model_timesteps=row.model_timesteps, schedule_config=row.schedule_config, source=row.source,
            model_sha256=row.model_sha256, config=row.config, seed=row.seed, code_version=row.code_version,
            val_loss=row.val_loss, quality=row.quality, job_id=row.job_id, created_at=row.created_at,
        )


class ScheduleExport(BaseModel):
    """A schedule version in one consumer's format, with what that format loses or changes."""

    format: ExportFormat
    version: int
    payload: dict[str, Any]
    caveats: list[str] = []


class ModelCreate(BaseModel):
    """``POST /models``: a catalog entry (``registry.catalog.ModelSpec``'s fields and rules)."""

    model_config = ConfigDict(extra="forbid")

    key: ModelKey
    format: Literal["diffusers", "safetensors", "analytic", "pickle"]
    location: str = Field(min_length=1, max_length=1024)
    schedule: Annotated[dict[str, Any], Field(json_schema_extra={
        "properties": {"name": {"enum": list(noise_schedules.NAMES)}}, "required": ["name"]})] | Annotated[
        str, Field(json_schema_extra={"enum": [FROM_SCHEDULER_CONFIG, BUILTIN]})]
    prediction: str = Field(json_schema_extra={"enum": [*PREDICTIONS, FROM_SCHEDULER_CONFIG, BUILTIN]})
    sample_shape: list[Annotated[int, Field(gt=0, le=MAX_SHAPE_SIZE)]] = Field(min_length=1, max_length=MAX_SHAPE_DIMS)
    conditioning: Literal["none", "class", "text"] = "none"
    sha256: Annotated[str, Field(json_schema_extra={"pattern": SHA256_PATTERN})] | None = None
    architecture: Annotated[str, Field(json_schema_extra={"enum": list(ARCHITECTURES)})] | None = None
    num_classes: int | None = Field(None, ge=1, le=MAX_CLASSES,
                                    description="class conditioning: labels 0..num_classes-1 (required then)")
    null_class: int | None = Field(None, ge=0, le=MAX_CLASSES,
                                   description="class conditioning: the unconditional label of classifier-free "
                                               "guidance, not one of the classes (required then)")
    image_shape: list[Annotated[int, Field(gt=0, le=MAX_SHAPE_SIZE)]] | None = Field(
        None, min_length=1, max_length=MAX_SHAPE_DIMS, description="latent diffusers pipelines: the decoded image shape "
                                                                   "(sample_shape is then the latent shape)")
    guard_features: str | None = Field(
        None, max_length=100, description="the feature map of the publish guard's distribution check (registry.catalog.GUARD_FEATURES); "
                          "null: that check is not made")
    description: str = Field("", max_length=4000)

    @model_validator(mode="after")
    def _catalog_rules(self) -> "ModelCreate":
        ModelSpec.from_dict(self.model_dump())  # ValueError naming the field, e.g. "model spec field 'sha256': ..."
        return self

    def spec_dict(self) -> dict[str, Any]:
        """The spec as stored in ``ModelRow.spec`` (``ModelSpec.to_dict()``)."""
        return ModelSpec.from_dict(self.model_dump()).to_dict()


class ModelPublic(BaseModel):
    key: str
    spec: dict[str, Any]
    created_at: dt.datetime

    @classmethod
    def from_row(cls, row: ModelRow) -> "ModelPublic":
        return cls(key=row.key, spec=row.spec, created_at=row.created_at)


class ApiKeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Annotated[str, StringConstraints(min_length=1, max_length=100), NoNul]
    scopes: list[Scope] = Field(min_length=1, max_length=len(SCOPES), json_schema_extra={"uniqueItems": True})

    @field_validator("scopes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"duplicate scopes in {v}")
        return v


class ApiKeyPublic(BaseModel):
    id: int
    name: str
    prefix: str
    scopes: list[str]
    created_at: dt.datetime
    revoked_at: dt.datetime | None

    @classmethod
    def from_row(cls, row: ApiKeyRow) -> "ApiKeyPublic":
        return cls(id=row.id, name=row.name, prefix=row.prefix, scopes=list(row.scopes), created_at=row.created_at,
                   revoked_at=row.revoked_at)


class ApiKeyCreated(ApiKeyPublic):
    """The new key with its plaintext ``key``: shown this once, only its hash is stored."""

    key: str


__all__ = [
    "JobOptions", "JobOptionRules", "JobCreate", "JobProgress", "JobPublished", "JobPublic", "JobEventPublic",
    "ScheduleVersionCreate",
    "ScheduleVersionPublic", "ScheduleExport", "ModelCreate", "ModelPublic", "ApiKeyCreate", "ApiKeyPublic",
    "ApiKeyCreated", "SCOPES", "EXPORT_FORMATS", "MODEL_KEY_PATTERN", "INT32_MAX", "INT64_MAX", "NoNul", "refuse_nul",
    "MAX_LEARNING_RATE", "MAX_GAMMA", "MAX_CLIP", "MAX_GUARD_Z", "MAX_ITERATIONS",
]
