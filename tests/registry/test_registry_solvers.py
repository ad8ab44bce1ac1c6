"""registry.solvers mirrors ld3core without importing torch: these tests hold the two together."""

import pytest

from registry import solvers


def test_solver_table_matches_ld3core():
    from ld3core.solvers import SOLVERS

    assert set(solvers.EVALS_PER_STEP) == set(SOLVERS)
    for name, spec in SOLVERS.items():
        assert solvers.EVALS_PER_STEP[name] == spec.evals_per_step, name
        for nfe in range(1, solvers.MAX_NFE + 1):
            assert solvers.steps_for_nfe(name, nfe) == spec.steps_for_nfe(nfe), (name, nfe)
            assert solvers.nfe_of_steps(name, nfe) == spec.nfe(nfe), (name, nfe)


def test_min_nfe_is_ld3configs_rule():
    from ld3core.config import LD3Config

    for name in solvers.SOLVER_NAMES:
        lo = solvers.min_nfe(name)
        LD3Config(solver=name, nfe=lo)  # accepted
        with pytest.raises(ValueError, match="single step"):
            LD3Config(solver=name, nfe=lo - 1)


def test_names_are_ld3cores_own():
    from ld3core import config

    assert (solvers.HEURISTIC_NAMES, solvers.LOSSES, solvers.MODES) == (config.HEURISTIC_NAMES, config.LOSSES, config.MODES)


def test_finals_match_ld3core():
    from ld3core.solvers import FINALS

    assert solvers.FINALS == FINALS


def test_check_messages():
    with pytest.raises(ValueError, match=r"unknown solver 'rk4'; known: dpmpp_2m, .*unipc"):
        solvers.check_solver("rk4")
    with pytest.raises(ValueError, match=r"heun needs an NFE between 3 and 100"):
        solvers.check_nfe("heun", 2)
    with pytest.raises(ValueError, match=r"euler needs an NFE between 2 and 100.*got 101"):
        solvers.check_nfe("euler", 101)
    with pytest.raises(ValueError, match=r"heun .* NFE 4 would learn 2 steps that use 3 evaluations and leave 1 unused; "
                                         r"nearest valid NFEs: 3, 5"):
        solvers.check_nfe("heun", 4)
    with pytest.raises(ValueError, match=r"nearest valid NFEs: 99$"):
        solvers.check_nfe("heun", 100)  # 101 is above MAX_NFE
    assert [n for n in range(3, 12) if _accepted("heun", n)] == [3, 5, 7, 9, 11]
    assert all(_accepted("unipc", n) for n in range(2, 101))


def _accepted(solver, nfe):
    try:
        return solvers.check_nfe(solver, nfe) == nfe
    except ValueError:
        return False
