"""What the commands print for people."""

from __future__ import annotations

from ld3cli.output import format_quality


def test_format_quality_orders_heuristics_and_marks_the_served_schedule():
    table = format_quality({"metric": "l2", "n_test": 4, "source": "edm", "learned": {"mean": 0.02, "sem": 0.01},
                            "best_heuristic": {"name": "edm", "mean": 0.03, "sem": 0.01},
                            "learned_minus_best": {"mean": -0.01, "sem": 0.02},
                            "heuristics": {"logsnr": {"mean": 0.1, "sem": 0.02}, "edm": {"mean": 0.03, "sem": 0.01}}})
    rows = table.splitlines()
    assert rows[0].split()[:3] == ["schedule", "test", "l2"]
    assert [r.split()[0] for r in rows[1:4]] == ["ld3", "edm", "logsnr"]
    assert rows[2].endswith("<- served") and "(paired, n = 4)" in rows[-1]
