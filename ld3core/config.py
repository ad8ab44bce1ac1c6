"""LD3 training configuration: one frozen, typed object, saved as JSON next to every result.

Defaults are the paper's pixel-space recipe (App. B.1.1); ``LD3Config.latent()`` gives the
latent-space one (App. B.1.2). Learning rates marked "/NFE" are divided by the NFE budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from .parameterization import MODES
from .solvers import FINALS, SOLVERS

LOSSES = ("lpips", "lpips_alex", "l2", "l1")


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

    @classmethod
    def latent(cls, **overrides: Any) -> "LD3Config":
        return cls(**{"lr_xi": 1e-3, "lr_xic": 0.001, "phase2_epochs": 3, **overrides})

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> None:
            raise ValueError(f"{name}: {why}")

        if self.solver not in SOLVERS:
            bad("solver", f"unknown solver {self.solver!r}; known: {sorted(SOLVERS)}")
        if self.nfe < 1:
            bad("nfe", f"must be >= 1, got {self.nfe}")
        steps = SOLVERS[self.solver].steps_for_nfe(self.nfe)
        if steps < 2:
            bad("nfe", f"{self.solver} at NFE {self.nfe} takes {steps} step; a single step has no interior time to learn")
        if self.loss not in LOSSES:
            bad("loss", f"unknown loss {self.loss!r}; known: {list(LOSSES)}")
        if self.mode not in MODES:
            bad("mode", f"unknown mode {self.mode!r}; known: {list(MODES)}")
        if self.final not in FINALS:
            bad("final", f"unknown final step {self.final!r}; known: {list(FINALS)}")
        if self.select_on not in ("hard", "soft"):
            bad("select_on", "must be 'hard' or 'soft'")
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
        return SOLVERS[self.solver].steps_for_nfe(self.nfe)

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


__all__ = ["LD3Config", "LOSSES"]
