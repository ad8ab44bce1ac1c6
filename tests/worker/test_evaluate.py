"""worker.evaluate: a learned schedule next to every heuristic, same seeds, on the shipped ddpm-digits."""

import json
from pathlib import Path

import pytest
import torch

from ld3core.config import TeacherSpec
from ld3core.heuristics import HEURISTICS, heuristic
from worker import evaluate as ev
from worker.loaders import load_model

MODELS = Path(__file__).resolve().parents[2] / "models"
TEACHER = TeacherSpec("unipc", 6, "logsnr")  # cheap; the table's structure does not depend on it


@pytest.fixture(scope="module")
def loaded():
    return load_model(ev.read_catalog(MODELS)["ddpm-digits"], MODELS)


@pytest.fixture(scope="module")
def scorer(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:  # reference statistics cached in a fresh directory
        mp.setenv("LD3_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
        s = ev.Scorer(("fd_digits", "lpips_teacher"), model_root=MODELS)
        s.digits_reference()
        yield s


@pytest.fixture(scope="module")
def table(loaded, scorer):
    learned = heuristic("logsnr", loaded.schedule, 3)  # a "learned" schedule equal to a heuristic
    return ev.evaluate(loaded, "unipc", 3, (learned, learned), n_samples=24, seed=0, teacher=TEACHER,
                       scorer=scorer, keep_samples=4)


def test_every_heuristic_and_the_teacher_are_rows(table):
    assert [r["name"] for r in table.rows] == ["ld3", *HEURISTICS, "teacher"]
    for r in table.rows:
        assert r["fd_digits"] >= 0
        assert len(r["t_steps"]) == (4 if r["name"] != "teacher" else 7)


def test_same_seeds_make_same_samples(table):
    # "ld3" here is the logsnr schedule: identical noise seeds give identical images and figures.
    assert torch.equal(table.samples["ld3"], table.samples["logsnr"])
    assert table.row("ld3")["fd_digits"] == table.row("logsnr")["fd_digits"]
    assert table.row("ld3")["lpips_teacher"] == table.row("logsnr")["lpips_teacher"]
    assert not torch.equal(table.samples["ld3"], table.samples["time_uniform"])


def test_fewer_steps_are_further_from_the_teacher(table):
    # At NFE 3 every schedule is further from the NFE-6 teacher than the teacher is from itself (0).
    assert all(table.row(h)["lpips_teacher"] > 0.0 for h in HEURISTICS)
    assert table.samples["teacher"].shape == (4, 1, 16, 16)
    assert table.samples["teacher"].abs().max() <= 1


def test_markdown_and_json(table, tmp_path):
    md = table.markdown()
    assert "| ld3 |" in md and "| edm |" in md and "FD-digits" in md and "LPIPS to teacher" in md
    d = table.to_dict()
    assert "samples" not in d and json.loads(json.dumps(d))["rows"][0]["name"] == "ld3"
    assert table.best_heuristic("fd_digits") in HEURISTICS


def test_eval_seeds_are_disjoint_per_run_and_from_jobs():
    a, b = ev.eval_seeds(0, 100), ev.eval_seeds(1, 100)
    assert len(set(a) | set(b)) == 200
    assert min(a) > 2 * 10_000_019  # beyond any LD3 job's pair seeds for small job seeds
    with pytest.raises(ValueError, match="n_samples"):
        ev.eval_seeds(0, 1)


def test_wrong_schedule_length_is_refused(loaded, scorer):
    t = heuristic("logsnr", loaded.schedule, 5)
    with pytest.raises(ValueError, match="learned schedule: unipc at NFE 3 takes 3 steps"):
        ev.evaluate(loaded, "unipc", 3, (t, t), n_samples=4, scorer=scorer, teacher=TEACHER)


def test_unknown_metric_is_refused():
    with pytest.raises(ValueError, match="metrics"):
        ev.Scorer(("is",), model_root=MODELS)


def test_read_schedule_checks_solver_and_nfe(tmp_path):
    f = tmp_path / "r.json"
    f.write_text(json.dumps({"learned_t_steps": [1.0, 0.5, 0.001], "learned_t_model": [1.0, 0.4, 0.001],
                             "t_steps": [9], "t_model": [9], "config": {"ld3": {"solver": "unipc", "nfe": 2}}}))
    t, tc = ev.read_schedule(f, "unipc", 2)
    assert t.tolist() == [1.0, 0.5, 0.001] and tc.tolist() == [1.0, 0.4, 0.001]
    with pytest.raises(ValueError, match="nfe"):
        ev.read_schedule(f, "unipc", 5)
    with pytest.raises(ValueError, match="solver"):
        ev.read_schedule(f, "ipndm", 2)


def test_given_teacher_samples_give_the_same_table(loaded, scorer, table):
    learned = next(torch.tensor(r["t_steps"], dtype=torch.float64) for r in table.rows if r["name"] == "ld3")
    teach = ev.teacher_samples(loaded, n_samples=24, seed=0, teacher=TEACHER)
    again = ev.evaluate(loaded, "unipc", 3, (learned, learned), n_samples=24, seed=0, teacher=TEACHER,
                        scorer=scorer, teacher_images=teach)
    assert [r["name"] for r in again.rows] == [r["name"] for r in table.rows]
    for a, b in zip(again.rows, table.rows):
        assert a["fd_digits"] == pytest.approx(b["fd_digits"], rel=1e-6)
    with pytest.raises(ValueError, match="teacher_images"):
        ev.evaluate(loaded, "unipc", 3, None, n_samples=24, seed=0, teacher=TEACHER, scorer=scorer,
                    teacher_images=teach[:5])
