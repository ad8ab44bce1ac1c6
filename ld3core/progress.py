"""One progress display per job phase, for a terminal or for a pipe/log (no torch here).

On a terminal: a tqdm bar per phase. Anywhere else (a pipe, a file, CI): plain lines, one when
a phase starts, then at most one every ``every_s`` seconds, and one when the phase ends, so
that a log holds a few readable lines, not a bar per refresh with meaningless rates.
"""

from __future__ import annotations

import sys
import time
from typing import Any, Callable, TextIO


class PhaseProgress:
    def __init__(self, stream: TextIO | None = None, *, tty: bool | None = None, every_s: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.every_s, self.clock = every_s, clock
        self.phase: str | None = None
        self.done, self.total, self.post = 0, 0, {}
        self.bar: Any = None
        self.last_line = -float("inf")
        self.last_done: tuple[str | None, int] = (None, -1)  # the phase and step the last line showed

    def update(self, phase: str, done: int, total: int | None, post: dict[str, str] | None = None) -> None:
        """Show ``done`` of ``total`` steps of ``phase`` (a new phase closes the previous one as complete)."""
        if phase != self.phase:
            self.close(completed=True)
            self.phase, self.last_line = phase, -float("inf")  # a phase's start always shows
            if self.tty:
                from tqdm import tqdm

                self.bar = tqdm(total=total or None, desc=phase, file=self.stream, leave=True)
        self.done, self.total, self.post = done, total or 0, dict(post or {})
        if self.bar is not None:
            if total and self.bar.total != total:
                self.bar.total = total
            self.bar.n = done
            self.bar.set_postfix(self.post, refresh=False)
            self.bar.refresh()
        elif self.clock() - self.last_line >= self.every_s and self.last_done != (phase, done):
            self._line()

    def close(self, completed: bool = False) -> None:
        """End the current phase; ``completed`` shows it at its total (it finished between two updates)."""
        if self.phase is None:
            return
        if completed and self.total:
            self.done = self.total
        if self.bar is not None:
            self.bar.n = self.done
            self.bar.refresh()
            self.bar.close()
            self.bar = None
        elif self.last_done != (self.phase, self.done):
            self._line()
        self.phase = None

    def _line(self) -> None:
        post = "".join(f", {k} {v}" for k, v in self.post.items())
        total = f"/{self.total}" if self.total else ""
        print(f"{self.phase}: {self.done}{total}{post}", file=self.stream, flush=True)
        self.last_line, self.last_done = self.clock(), (self.phase, self.done)
