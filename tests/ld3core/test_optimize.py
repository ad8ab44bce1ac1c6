import dataclasses

import pytest
import torch

from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser
from ld3core.config import LD3Config
from ld3core.losses import l2
from ld3core.optimize import JobConfig, job_pairs, run_job
from ld3core.schedules import EDM
from ld3core.teacher import TeacherSpec

DEN = AnalyticDenoiser(BUILTIN_MIXTURES["gmm2d"](), EDM())


def job(**kw):
    ld3 = LD3Config(solver="euler", nfe=4, loss="l2", phase1_epochs=1, phase2_epochs=2, remat=False, **kw)
    return JobConfig(ld3=ld3, teacher=TeacherSpec("euler", 200, "edm"), n_train=10, n_val=10, n_test=30, starts=2)


def test_job_returns_ld3_only_when_it_beats_every_heuristic_on_the_test_split():
    cfg = job()
    res = run_job(DEN, (2,), cfg, l2, dtype=torch.float64)
    best = min(v["mean"] for k, v in res.test.items() if k not in ("ld3", "ld3_minus_best"))
    assert set(res.test) == {"ld3", "time_uniform", "time_quadratic", "logsnr", "edm", "ld3_minus_best"}
    assert res.source == "ld3" and res.test["ld3"]["mean"] < best
    diff = res.test["ld3_minus_best"]
    assert diff["mean"] + cfg.guard_z * diff["sem"] < 0
    assert abs(diff["mean"] - (res.test["ld3"]["mean"] - best)) < 1e-12
    assert torch.equal(res.t_steps, res.learned_t_steps)
    d = res.to_dict()
    assert d["source"] == "ld3" and len(d["t_steps"]) == 5


def test_job_falls_back_to_the_heuristic_when_learning_does_not_help():
    # No training at all (zero learning rates): the "learned" schedule is its start, which
    # cannot beat the best heuristic on test, so the heuristic is returned, with both figures.
    cfg = job(lr_xi=0.0, lr_xic=0.0, lr_x=0.0)
    res = run_job(DEN, (2,), cfg, l2, dtype=torch.float64)
    assert res.source != "ld3" and res.source == res.best_heuristic
    assert "did not beat" in res.message
    assert res.test["ld3"]["mean"] >= res.test[res.source]["mean"]


def test_precomputed_pairs_give_the_same_job():
    cfg = job()
    pairs = job_pairs(DEN, (2,), cfg, dtype=torch.float64)
    a = run_job(DEN, (2,), cfg, l2, dtype=torch.float64, pairs=pairs)
    b = run_job(DEN, (2,), cfg, l2, dtype=torch.float64)
    assert torch.equal(a.learned_t_steps, b.learned_t_steps)


def test_progress_covers_every_phase():
    seen = []
    run_job(DEN, (2,), job(), l2, dtype=torch.float64, on_progress=lambda p: seen.append(p.phase))
    assert [p for i, p in enumerate(seen) if i == 0 or seen[i - 1] != p] == ["teacher", "training", "evaluation"]


def test_the_guard_wants_a_clear_paired_win():
    # Same job, an impossible margin: LD3 is better on average but not by 1e6 standard errors.
    res = run_job(DEN, (2,), dataclasses.replace(job(), guard_z=1e6), l2, dtype=torch.float64)
    assert res.test["ld3"]["mean"] < min(v["mean"] for k, v in res.test.items() if k not in ("ld3", "ld3_minus_best"))
    assert res.source == res.best_heuristic and "not closer to the teacher beyond noise" in res.message
    assert res.guard["serve_ld3"] is False and res.guard["fd"] is None


def test_a_feature_map_adds_the_distribution_check_to_the_guard():
    from ld3core.guard import fd_difference
    from ld3core.heuristics import heuristic
    from ld3core.optimize import held_out_test
    from ld3core.solvers import get_solver

    cfg = job()
    res = run_job(DEN, (2,), cfg, l2, dtype=torch.float64, features=lambda x: x)
    fd = res.guard["fd"]
    assert res.source == "ld3" and fd["fd_a"] < fd["fd_b"] and "FD to the teacher" in res.message
    # The verdict's figures are those of the test pairs' samples (recomputed here from the job's seeds).
    pairs = job_pairs(DEN, (2,), cfg, dtype=torch.float64)["test"]
    cands = {h: heuristic(h, DEN.schedule, cfg.ld3.n_steps) for h in cfg.heuristics}
    test, best, v = held_out_test(DEN, cfg, cands, (res.learned_t_steps, res.learned_t_model), pairs, l2, features=lambda x: x)
    assert best == res.best_heuristic and v.to_dict() == res.guard and test == res.test
    fn = get_solver("euler").fn
    again = fd_difference(fn(DEN, pairs.x_T, res.learned_t_steps, res.learned_t_model), fn(DEN, pairs.x_T, cands[best], None),
                          pairs.x_0, seed=cfg.ld3.seed)
    assert again["mean"] == pytest.approx(fd["mean"])


def _class_model():
    from ld3core.analytic import ClassConditionalDenoiser, grid_mixture

    return ClassConditionalDenoiser([grid_mixture(dim=2, per_axis=2, spacing=s) for s in (0.5, 1.0, 2.0)], EDM())


def _labels(seeds):
    return torch.tensor([s % 3 for s in seeds])


def test_conditional_job_conditions_every_split_by_seed_and_resumes_bit_for_bit():
    model, cfg = _class_model(), job()
    pairs = job_pairs(model, (2,), cfg, dtype=torch.float64, conditions=_labels)
    for name, seeds in cfg.seeds().items():
        assert torch.equal(pairs[name].cond, _labels(seeds))
    states = []
    full = run_job(model, (2,), cfg, l2, dtype=torch.float64, conditions=_labels, on_checkpoint=states.append)
    assert full.source == "ld3"
    resumed = run_job(model, (2,), cfg, l2, dtype=torch.float64, conditions=_labels, resume=states[len(states) // 2])
    assert torch.equal(resumed.learned_t_steps, full.learned_t_steps)
    assert resumed.test == full.test
    # Scoring and test use the pairs' own conditions: the same pairs under other labels score otherwise.
    shuffled = {k: type(p)(p.x_T, p.x_0, (p.cond + 1) % 3) for k, p in pairs.items()}
    other = run_job(model, (2,), cfg, l2, dtype=torch.float64, pairs=shuffled)
    assert other.test["edm"]["mean"] > 2 * full.test["edm"]["mean"]


def test_conditional_job_without_conditions_is_refused():
    import pytest

    with pytest.raises(ValueError, match="needs per-sample conditions"):
        run_job(_class_model(), (2,), job(), l2, dtype=torch.float64)


def test_init_trains_one_named_heuristic_alone():
    cfg = dataclasses.replace(job(), init="time_uniform")
    res = run_job(DEN, (2,), cfg, l2, dtype=torch.float64)
    assert len(res.train.starts) == 1
    first = res.train.history[0]["val_hard"][0]
    assert abs(first - res.val["time_uniform"]) < 1e-12  # the start is time-uniform


def test_init_must_be_best_or_one_of_the_jobs_heuristics():
    import pytest

    with pytest.raises(ValueError, match="init"):
        dataclasses.replace(job(), init="cosine")
    with pytest.raises(ValueError, match="init"):
        dataclasses.replace(job(), heuristics=("edm", "logsnr"), init="time_uniform")


def test_the_default_job_is_unchanged_by_the_final_step_rule():
    """A default LD3 job (LD3Config and JobConfig defaults but for sizes and the loss) gives the
    schedule it gave before grids could end at 0 (commit 64d7706) and before the solvers became
    generators of their network evaluations. Values, not bits: a sha256 of the bits differed
    between two CPUs running the same torch build (see tests/ld3core/solvers/test_package.py)."""
    from ld3core.models import load_builtin

    m = load_builtin("gmm2d-vp")
    cfg = JobConfig(ld3=LD3Config(loss="l2", phase1_epochs=1, phase2_epochs=1), n_train=4, n_val=4, n_test=8)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        res = run_job(m.denoiser, m.sample_shape, cfg, l2)
    finally:
        torch.set_num_threads(before)
    start = [1.0, 0.65015928851253879, 0.3753389327688082, 0.17553893276880822, 0.05075928851253881, 0.001]
    learned = [1.0, 0.6424824272730667, 0.36165256512338562, 0.17500349739757468, 0.047479952550303288, 0.001]
    assert cfg.ld3.final == "sigma_min"
    for got, want in ((res.t_steps, start), (res.t_model, start), (res.learned_t_steps, learned), (res.learned_t_model, learned)):
        assert torch.allclose(got, torch.tensor(want, dtype=got.dtype), rtol=1e-9, atol=0), (got.tolist(), want)
    assert abs(res.test["ld3"]["mean"] - 0.002740613281929427) <= 1e-9 * 0.002740613281929427


def test_final_zero_scores_and_tests_every_schedule_with_the_last_step_to_zero():
    from ld3core.heuristics import heuristic
    from ld3core.optimize import per_sample_losses
    from ld3core.solvers import final_grid, get_solver

    cfg = dataclasses.replace(job(final="zero"), starts=1)
    pairs = job_pairs(DEN, (2,), cfg, dtype=torch.float64)
    res = run_job(DEN, (2,), cfg, l2, dtype=torch.float64, pairs=pairs)
    t = heuristic("edm", DEN.schedule, cfg.ld3.n_steps)
    direct = l2(get_solver("euler").fn(DEN, pairs["test"].x_T, final_grid(t, "zero")), pairs["test"].x_0)
    assert res.test["edm"]["mean"] == pytest.approx(float(direct.mean()), rel=1e-12)
    assert torch.equal(per_sample_losses(DEN, "euler", t, None, pairs["test"], l2, 64, "zero"), direct)
    assert res.config["ld3"]["final"] == "zero"
