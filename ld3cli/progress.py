"""The progress bar of a followed job (``ld3 submit --wait``, ``ld3 quickstart``)."""

from __future__ import annotations

import sys
from typing import Any


class ProgressBar:
    """The job's phases (``ld3core.progress.PhaseProgress``), fed with the job as the client polls it."""

    def __init__(self, enabled: bool = True, *, tty: bool | None = None) -> None:
        from ld3core.progress import PhaseProgress

        self.enabled, self.state = enabled, None
        self.progress = PhaseProgress(tty=tty)

    def __call__(self, job: dict[str, Any]) -> None:
        if not self.enabled:
            return
        pr = job["progress"]
        if job["state"] != self.state:
            # A phase seen running is complete once the job succeeds; a failed or cancelled one stays where it was.
            self.close(completed=job["state"] == "succeeded")
            self.state = job["state"]
            print(f"job {job['id']}: {job['state']}", file=sys.stderr)
        if job["state"] != "running" or not pr.get("phase"):
            return
        post = {}
        if pr.get("loss_best") is not None:
            post["best"] = f"{pr['loss_best']:.4g}"
        if pr.get("eta_s") is not None:
            post["eta"] = f"{pr['eta_s']:.0f}s"
        # A new phase closes the previous one as complete: it finished between two polls.
        self.progress.update(pr["phase"], pr["done"], pr["total"], post)

    @property
    def bar(self):
        return self.progress.bar

    def close(self, completed: bool = False) -> None:
        self.progress.close(completed)
