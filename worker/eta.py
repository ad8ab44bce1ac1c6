"""The ETA of a job: its remaining work, in network evaluations of one sample, at the speed
measured so far.

Losses and VAE decodes are not counted, so during the teacher phase the estimate is a rough
guess that firms up once training runs (``registry.schemas.JobProgress.eta_s`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass

from ld3core.config import JobConfig
from ld3core.train import Progress, validation_passes

PHASES = ("teacher", "training", "evaluation")
BACKWARD = 2.0  # a backward pass costs about two forward passes


@dataclass(frozen=True)
class PhaseCost:
    """One phase's work in network evaluations of one sample: ``per_step`` for each of its
    ``steps`` progress steps still to run, and ``tail``, the work after its last report that
    no progress step covers (scoring the heuristics after the teacher, the sample grid after
    the evaluation)."""

    per_step: float
    steps: int
    tail: float = 0.0


def job_cost(cfg: JobConfig, *, resume_iteration: int = 0, preview_samples: int = 0) -> dict[str, PhaseCost]:
    """The work of each phase of a job (``resume_iteration``: training starts there), counted in
    network evaluations of one sample (a backward pass counts ``BACKWARD``, a rematerialized
    one a forward more; losses and VAE decodes are not counted).

    Teacher: a step is one pair. Training: one iteration, with the validation passes and the
    epoch-end moves of the validation noise spread over the iterations. Evaluation: one
    schedule (every heuristic, then the learned one) on the test pairs."""
    ld3, nfe = cfg.ld3, cfg.ld3.nfe
    k = min(cfg.starts, len(cfg.heuristics)) if cfg.init == "best" else 1  # starts trained side by side
    per_epoch = cfg.n_train // ld3.batch_size
    total = (ld3.phase1_epochs + ld3.phase2_epochs) * per_epoch
    grad = 1 + BACKWARD + (1 if ld3.remat else 0)  # forward, backward, recomputed forward
    steps = total * k * ld3.batch_size * nfe * grad
    full, single = validation_passes(ld3, per_epoch)
    validations = (full * (2 if ld3.soft else 1) + single) * k * cfg.n_val * nfe
    epochs = ld3.phase1_epochs + ld3.phase2_epochs
    moves = epochs * k * cfg.n_val * nfe * grad if ld3.soft else 0
    if ld3.soft and ld3.accept_moves:  # each move is checked by one more solve
        moves += (total * ld3.batch_size + epochs * cfg.n_val) * k * nfe
    return {
        "teacher": PhaseCost(cfg.teacher.nfe, cfg.n_train + cfg.n_val + cfg.n_test, len(cfg.heuristics) * cfg.n_val * nfe),
        "training": PhaseCost((steps + validations + moves) / total, total - resume_iteration),
        "evaluation": PhaseCost(cfg.n_test * nfe, len(cfg.heuristics) + 1, preview_samples * nfe),
    }


def remaining_work(cost: dict[str, PhaseCost], phase: str, done: int, total: int) -> float:
    """The work left to the job's end, ``done`` of ``total`` steps into ``phase``."""
    here = cost[phase]
    later = [cost[p] for p in PHASES[PHASES.index(phase) + 1 :]]
    return max(total - done, 0) * here.per_step + here.tail + sum(c.steps * c.per_step + c.tail for c in later)


class Eta:
    """Seconds to the job's end: the work left (``remaining_work``) at the speed measured since
    the current phase began (before its first step: the previous phase's speed; None before any)."""

    def __init__(self, cost: dict[str, PhaseCost]) -> None:
        self.cost = cost
        self.phase: str | None = None
        self.phase_t0 = self.phase_done0 = 0.0
        self.s_per_unit: float | None = None  # seconds per unit of work, measured in the phase in progress

    def __call__(self, p: Progress, now: float) -> float | None:
        """The ETA at progress report ``p``, made at monotonic time ``now``."""
        if p.phase != self.phase:
            self.phase, self.phase_t0, self.phase_done0 = p.phase, now, p.iteration
        done = p.iteration - self.phase_done0
        if done > 0:
            self.s_per_unit = (now - self.phase_t0) / (done * self.cost[p.phase].per_step)
        if self.s_per_unit is None:
            return None
        return self.s_per_unit * remaining_work(self.cost, p.phase, p.iteration, p.total)
