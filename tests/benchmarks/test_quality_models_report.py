"""The report arithmetic of benchmarks/quality_models.py (pure functions over result cells)."""

import importlib.util
from pathlib import Path

import pytest

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "quality_models.py"
spec = importlib.util.spec_from_file_location("quality_models", PATH)
qm = importlib.util.module_from_spec(spec)
spec.loader.exec_module(qm)

HEURISTICS = ("time_uniform", "time_quadratic", "logsnr", "edm")


def cell(seed, ld3, heur, teacher, source="ld3", nfe=4, model="m", solver="unipc"):
    rows = [{"name": "ld3", "fd_digits": ld3}, {"name": "teacher", "fd_digits": teacher}]
    rows += [{"name": h, "fd_digits": v} for h, v in zip(HEURISTICS, heur)]
    return {"model": model, "solver": solver, "nfe": nfe, "seed": seed, "rows": rows, "source": source, "train_s": 1.0}


def test_summarize_best_cut_headroom_and_served():
    cells = [cell(0, 60.0, (100.0, 80.0, 200.0, 300.0), 40.0),
             cell(1, 40.0, (100.0, 120.0, 200.0, 300.0), 40.0, source="time_uniform")]
    v = qm.summarize(cells)[("m", "unipc", 4)]
    assert v["best"] == "time_uniform"  # ties time_quadratic (mean 100): the first in HEURISTICS order wins
    assert v["cut"] == pytest.approx(1 - 50 / 100)
    assert v["seed_cuts"] == pytest.approx([0.4, 0.6])  # per seed against the same heuristic
    assert v["headroom"] == pytest.approx(1 - 40 / 100)
    # Served: seed 0 returned LD3 (60), seed 1 the guard's heuristic time_uniform (100).
    assert v["served_cut"] == pytest.approx(1 - 80 / 100)
    assert v["returned"] == 1 and v["seeds"] == 2


def test_summarize_picks_the_lowest_mean_heuristic():
    cells = [cell(0, 50.0, (100.0, 90.0, 200.0, 300.0), 40.0), cell(1, 50.0, (100.0, 70.0, 200.0, 300.0), 40.0)]
    v = qm.summarize(cells)[("m", "unipc", 4)]
    assert v["best"] == "time_quadratic" and v["cut"] == pytest.approx(1 - 50 / 80)


def test_worse_beyond_noise_needs_a_consistent_loss():
    assert not qm.worse_beyond_noise([-0.5])  # one seed says nothing
    assert not qm.worse_beyond_noise([-0.2, 0.1, -0.05])  # mean < 0 but within the spread
    assert qm.worse_beyond_noise([-0.20, -0.21, -0.19])
    assert not qm.worse_beyond_noise([0.3, 0.31, 0.29])


def test_target_check_reads_cut_noise_and_headroom():
    cells = []
    for sd, (l4, l5, l6) in enumerate([(50.0, 60.0, 110.0), (52.0, 58.0, 111.0), (48.0, 62.0, 109.0)]):
        cells += [cell(sd, l4, (100.0, 120.0, 200.0, 300.0), 30.0, nfe=4),
                  cell(sd, l5, (100.0, 120.0, 200.0, 300.0), 80.0, nfe=5),
                  cell(sd, l6, (100.0, 120.0, 200.0, 300.0), 30.0, nfe=6)]
    (line,) = qm.target_check(qm.summarize(cells))
    assert line.startswith("- m / unipc: FAIL")
    assert "NFE 4: +50%" in line and "NFE 5: +40%" in line and "NFE 6: -10%" in line
    assert "worse at NFE [6]" in line and "worse beyond seed noise at NFE [6]" in line
    assert "teacher's own cut under 30% at NFE [5]" in line


def test_target_check_passes_only_when_every_nfe_ran_and_holds():
    cells = [cell(sd, 50.0 + sd, (100.0, 120.0, 200.0, 300.0), 20.0, nfe=n) for sd in range(3) for n in (4, 5)]
    (line,) = qm.target_check(qm.summarize(cells))
    assert line.startswith("- m / unipc: INCOMPLETE") and "NFE [6, 7, 8] not run" in line
    cells += [cell(sd, 90.0, (100.0, 120.0, 200.0, 300.0), 20.0, nfe=n) for sd in range(3) for n in (6, 7, 8)]
    (line,) = qm.target_check(qm.summarize(cells))
    assert line.startswith("- m / unipc: PASS") and "nowhere worse beyond seed noise" in line


def test_cut_tables_render_every_field():
    cells = [cell(sd, 50.0, (100.0, 120.0, 200.0, 300.0), 20.0) for sd in range(2)]
    assert "| m | unipc | +50% ± 0 (2) |" in qm.cut_table(cells)
    assert "| m | unipc | +80% |" in qm.cut_table(cells, field="headroom")
    assert "| m | unipc | +50% |" in qm.cut_table(cells, field="served_cut")


def test_rescore_requires_the_evaluation_size(tmp_path, capsys):
    with pytest.raises(SystemExit):
        qm.main(["--rescore", str(tmp_path / "none.jsonl"), "--out", str(tmp_path)])
    assert "--n-samples" in capsys.readouterr().err


def test_rescore_on_one_noise_set_scores_like_a_full_evaluation(tmp_path):
    """--rescore --eval-seed: the second seed samples only its learned schedule; scoring a
    heuristic's own times as "learned" must give that heuristic's figure on either path."""
    import json

    from ld3core.heuristics import heuristic
    from worker.evaluate import read_catalog
    from worker.loaders import load_model

    loaded = load_model(read_catalog(qm.REPO / "models")["ddpm-digits"], qm.REPO / "models")
    t = heuristic("time_quadratic", loaded.schedule, 4).tolist()
    prev = tmp_path / "prev.jsonl"
    with prev.open("w") as f:
        for seed in (0, 1):
            f.write(json.dumps({
                "model": "ddpm-digits", "solver": "unipc", "nfe": 4, "seed": seed, "train_s": 1.0, "source": "ld3",
                "best_heuristic_val": "time_quadratic", "job_timings": {}, "iterations": 0, "loss": "l2",
                "config": {"teacher": {"solver": "unipc", "nfe": 6, "heuristic": "logsnr"}},
                "config_size": dict(qm.QUICK), "rows": [{"name": "ld3", "t_steps": t, "t_model": t}]}) + "\n")
    args = ["--rescore", str(prev), "--n-samples", "24", "--eval-seed", "0", "--models", "ddpm-digits",
            "--solvers", "unipc", "--nfes", "4", "--seeds", "0", "1", "--no-lpips", "--out", str(tmp_path), "--tag", "r"]
    qm.main(args)
    cells = qm.read_jsonl(tmp_path / "r.jsonl")
    assert [c["seed"] for c in cells] == [0, 1] and {c["eval_seed"] for c in cells} == {0}
    assert "ld3_only_s" in cells[1]["eval_timings"] and "ld3_only_s" not in cells[0]["eval_timings"]
    for c in cells:
        rows = {r["name"]: r["fd_digits"] for r in c["rows"]}
        assert rows["ld3"] == pytest.approx(rows["time_quadratic"], rel=1e-6)
    assert [r for r in cells[0]["rows"] if r["name"] != "ld3"] == [r for r in cells[1]["rows"] if r["name"] != "ld3"]
    assert cells[0]["config_size"]["n_samples"] == 24 and cells[0]["rescored_from"] == "prev.jsonl"
    qm.main(args)  # a second run finds both cells done
    assert len(qm.read_jsonl(tmp_path / "r.jsonl")) == 2
