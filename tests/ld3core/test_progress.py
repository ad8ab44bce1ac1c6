import io

from ld3core.progress import PhaseProgress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def test_a_pipe_gets_a_line_per_phase_start_every_few_seconds_and_at_the_end():
    out, clock = io.StringIO(), Clock()
    p = PhaseProgress(out, every_s=5, clock=clock)
    for i in range(0, 41):  # 40 s of training, a report every second
        clock.t = float(i)
        p.update("training", i, 40, {"best": "0.03"})
    clock.t = 41.0
    p.update("evaluation", 0, 5)  # the training line ends at its total
    p.close(completed=True)
    lines = out.getvalue().splitlines()
    assert lines[0] == "training: 0/40, best 0.03"
    assert [ln.split(":")[1].split(",")[0].strip() for ln in lines if ln.startswith("training")] == \
        [f"{i}/40" for i in range(0, 41, 5)]
    assert lines[-2:] == ["evaluation: 0/5", "evaluation: 5/5"]
    assert "it/s" not in out.getvalue()


def test_a_phase_closed_short_stays_where_it_stopped():
    out = io.StringIO()
    p = PhaseProgress(out, every_s=60, clock=Clock())
    p.update("training", 7, 50)
    p.close(completed=False)
    assert out.getvalue().splitlines() == ["training: 7/50"]


def test_a_terminal_gets_a_bar():
    out = io.StringIO()
    p = PhaseProgress(out, tty=True)
    p.update("teacher", 10, 40)
    assert p.bar is not None and p.bar.n == 10
    p.update("training", 1, 5)  # the teacher bar is completed and closed
    assert "40/40" in out.getvalue() and p.phase == "training"
