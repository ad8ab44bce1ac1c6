"""What the API checks about solvers, heuristics and losses, without importing torch.

The solver table mirrors ``ld3core.solvers.SOLVERS`` (which holds the solver functions, hence
torch); ``tests/registry/test_registry_solvers.py`` fails if the two drift apart. The names of
the heuristics, losses and modes are ``ld3core.config``'s own (a module without torch).
"""

from __future__ import annotations

from ld3core.config import FINALS, HEURISTIC_NAMES, LOSSES, MODES

# Network evaluations per step: Heun takes 2 per step, its last step is Euler (EDM's convention).
EVALS_PER_STEP: dict[str, int] = {
    "euler": 1,
    "heun": 2,
    "dpmpp_2m": 1,
    "dpmpp_3m": 1,
    "dpmpp_3m_exact": 1,
    "unipc": 1,
    "unipc_bh1_2": 1,
    "unipc_bh1_3": 1,
    "unipc_bh2_2": 1,
    "unipc_bh2_3": 1,
    "ipndm": 1,
    "ipndm_2": 1,
    "ipndm_3": 1,
}
SOLVER_NAMES: tuple[str, ...] = tuple(sorted(EVALS_PER_STEP))
MAX_NFE = 100
MIN_STEPS = 2  # one step has no interior time to learn


def check_solver(name: str) -> str:
    """``name`` if ld3core knows the solver, else ValueError listing the known ones."""
    if name not in EVALS_PER_STEP:
        raise ValueError(f"unknown solver {name!r}; known: {', '.join(SOLVER_NAMES)}")
    return name


def check_heuristic(name: str) -> str:
    """``name`` if ld3core has the heuristic schedule, else ValueError listing the known ones."""
    if name not in HEURISTIC_NAMES:
        raise ValueError(f"unknown heuristic {name!r}; known: {', '.join(HEURISTIC_NAMES)}")
    return name


def steps_for_nfe(solver: str, nfe: int) -> int:
    """Steps N that fit ``nfe`` network evaluations (``ld3core.solvers.SolverSpec.steps_for_nfe``)."""
    if nfe < 1:
        raise ValueError(f"nfe must be >= 1, got {nfe}")
    return nfe if EVALS_PER_STEP[check_solver(solver)] == 1 else (nfe + 1) // 2


def min_nfe(solver: str) -> int:
    """The smallest NFE that gives ``solver`` at least two steps (LD3Config's rule)."""
    return MIN_STEPS if EVALS_PER_STEP[check_solver(solver)] == 1 else 2 * MIN_STEPS - 1


def nfe_of_steps(solver: str, steps: int) -> int:
    """Network evaluations of ``steps`` steps (``ld3core.solvers.SolverSpec.nfe``): Heun 2N - 1."""
    return steps if EVALS_PER_STEP[check_solver(solver)] == 1 else 2 * steps - 1


def check_nfe(solver: str, nfe: int, *, max_nfe: int = MAX_NFE) -> int:
    """``nfe`` if LD3 can learn a schedule for ``solver`` at that budget, else ValueError saying why.

    A budget that the solver's steps cannot use up is refused too (Heun at an even NFE would learn
    the steps of NFE - 1 and leave one evaluation unused), naming the nearest NFEs it can use."""
    lo = min_nfe(solver)
    if not lo <= nfe <= max_nfe:
        raise ValueError(f"{solver} needs an NFE between {lo} and {max_nfe} (at least {MIN_STEPS} steps to learn), got {nfe}")
    used = nfe_of_steps(solver, steps_for_nfe(solver, nfe))
    if used != nfe:
        above = nfe_of_steps(solver, steps_for_nfe(solver, nfe) + 1)
        nearest = [v for v in (used, above) if lo <= v <= max_nfe]
        raise ValueError(f"{solver} takes {EVALS_PER_STEP[solver]} evaluations per step and one on its last step, so "
                         f"NFE {nfe} would learn {steps_for_nfe(solver, nfe)} steps that use {used} evaluations and "
                         f"leave {nfe - used} unused; nearest valid NFEs: {', '.join(map(str, nearest))}")
    return nfe


__all__ = [
    "EVALS_PER_STEP", "SOLVER_NAMES", "HEURISTIC_NAMES", "LOSSES", "MODES", "MAX_NFE",
    "check_solver", "check_heuristic", "steps_for_nfe", "nfe_of_steps", "min_nfe", "check_nfe", "FINALS",
]
