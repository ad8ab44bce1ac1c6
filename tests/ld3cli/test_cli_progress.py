"""The progress bar of a followed job."""

from __future__ import annotations

from ld3cli.progress import ProgressBar


def _job(state, phase=None, done=0, total=0):
    return {"id": "j1", "state": state, "progress": {"phase": phase, "done": done, "total": total}}


def test_progress_bar_completes_a_phase_the_polls_left_short(capsys):
    bar, seen = ProgressBar(tty=True), []
    bar(_job("running", "teacher", 10, 40))
    first = bar.bar
    bar(_job("running", "training", 3, 50))  # the teacher phase ended between two polls
    seen.append((first.n, first.total))
    second = bar.bar
    bar(_job("succeeded", "evaluation", 5, 5))
    seen.append((second.n, second.total))
    assert seen == [(40, 40), (50, 50)]
    err = capsys.readouterr().err
    assert "teacher: 100%" in err and "40/40" in err and "50/50" in err


def test_progress_bar_leaves_a_failed_phase_where_it_stopped():
    bar = ProgressBar(tty=True)
    bar(_job("running", "training", 7, 50))
    training = bar.bar
    bar(_job("failed", "training", 7, 50))
    assert training.n == 7 and bar.bar is None
