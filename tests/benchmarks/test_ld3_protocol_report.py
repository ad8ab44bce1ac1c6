"""The report of benchmarks/ld3_protocol.py: what the guard served, and the ablation arithmetic."""

import importlib.util
from pathlib import Path

PATH = Path(__file__).resolve().parents[2] / "benchmarks" / "ld3_protocol.py"
spec = importlib.util.spec_from_file_location("ld3_protocol", PATH)
lp = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lp)


def score(lpips, fd):
    return {"lpips": lpips, "rmse": 2 * lpips, "fd": fd}


HEUR = {"model": "ddpm-digits", "solver": "unipc", "nfe": 5, "teacher_fd": 56.0,
        "heuristics": {"time_uniform": score(0.05, 60.0), "time_quadratic": score(0.03, 70.0)}}


def row(variant, seed, learned, source="ld3"):
    return {"model": "ddpm-digits", "solver": "unipc", "nfe": 5, "seed": seed, "variant": variant, "learned": learned,
            "source": source, "best_iteration": 100, "decoupled_moved": True}


def test_served_scores_are_the_learned_schedule_s_or_the_served_heuristic_s():
    assert lp.served_scores(row("default", 0, score(0.02, 58.0)), HEUR) == score(0.02, 58.0)
    assert lp.served_scores(row("default", 0, score(0.02, 58.0), source="time_uniform"), HEUR) == score(0.05, 60.0)


def test_report_counts_served_jobs_against_the_best_heuristic_of_each_metric():
    rows = [row("default", 0, score(0.02, 58.0)),  # better than both bests
            row("default", 1, score(0.02, 65.0)),  # best LPIPS, but FD worse than time_uniform's 60
            row("default", 2, score(0.04, 58.0), source="time_quadratic")]  # the guard's heuristic served
    md = lp.report(rows, [HEUR])
    line = next(x for x in md.splitlines() if "| default |" in x)
    cells = [c.strip() for c in line.split("|")]
    assert cells[-3] == f"{(0.02 + 0.02 + 0.03) / 3:.4f} / {(58.0 + 65.0 + 70.0) / 3:.1f}"
    assert cells[-2] == "3/3, 1/3"  # LPIPS: 0.02, 0.02, 0.03 <= 0.03; FD: only 58 <= 60
    assert "best heur. on FD (time_uniform)" in md and "best heur. (time_quadratic)" in md
    assert cells[10] == "2/3"  # served LD3


def test_ablation_is_the_mean_per_job_change_against_ours():
    rows = [row("ours", s, score(0.04, 80.0)) for s in (0, 1)] + [row("restore", 0, score(0.03, 60.0)),
                                                                   row("restore", 1, score(0.05, 100.0))]
    md = lp.report(rows, [HEUR])
    line = next(x for x in md.splitlines() if x.startswith("| restore | 2 |"))
    assert line.split("|")[3].strip() == f"{(0.03 / 0.04 + 0.05 / 0.04) / 2 - 1:+.1%}" and "1/2" in line
