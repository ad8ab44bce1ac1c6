"""Replaying a step of the training loop as a CUDA graph.

An LD3 iteration at batch 2 is bound by kernel launches and host work, not arithmetic: on an
H200 it cost 1.4-2.1x its network calls (issue 14). A CUDA graph records every kernel of one
call once and replays them with a single launch. It asks three things of the step it records:
no value read by the host inside it (a read during capture is an error, and a replay would
not redo it), static shapes, and every tensor it reads or writes outside itself staying the
same tensor (the replay works on the recorded addresses; a tensor rebound in Python is one
the graph no longer sees). ``ld3core.train`` writes its iteration and validation pass that
way; ``Replay`` runs them and checks the third rule on every device.

Off a GPU, ``Replay`` does what a CUDA graph does with another recorder: ``make_fx`` records
the step's tensor operations once (its forward, its backward and its in-place updates, at the
level of ATen operations) and every later call replays that record on the same tensors, without
running the step's Python again. So a CPU test of training with graphs tests what the capture
relies on: a value read on the host and baked into the record, a tensor rebound instead of
updated, Python state that a replay would not update, each makes the replayed run differ from
the eager one.

torch.compile's ``mode="reduce-overhead"`` failed on the default job because it graphs the
network call alone while the solver keeps earlier outputs alive (``ld3core.accel``); here the
whole iteration is one graph, so nothing from inside it outlives a replay except what it
writes into the run's own tensors, and a validation's returned losses, which the loop reads
right after that replay. That is also why the graphs of one run can share one memory pool
(``Replay(pool=...)``): no graph reads memory that another graph's replay may have written,
so the run holds the largest graph's working memory, not the sum.

A capture that fails (an operation the graph cannot hold, in a network the loop does not
know) is not a failed job: that step goes on eagerly, with a warning in the log.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Sequence

import torch
from torch import Tensor
from torch.fx.experimental.proxy_tensor import make_fx

log = logging.getLogger(__name__)


class Replay:
    """``fn()`` run eagerly for its first ``warmup`` calls, then captured once and replayed.

    ``fn`` takes no arguments, reads no value on the host and keeps its effects to the tensors
    that ``fixed()`` lists (updated in place); what it returns is returned by every call (on a
    CUDA replay: the same tensors, overwritten). On a CUDA device the capture is a
    ``torch.cuda.CUDAGraph`` (warm-up calls on a side stream, as capture requires; ``pool``: a
    ``torch.cuda.graph_pool_handle()`` shared with other graphs of the same run); elsewhere a
    ``make_fx`` record of its ATen operations (made while running it: that call's work is
    done by the recording itself), replayed without Python. On every device each call first
    checks that ``fixed()`` still names the tensors it named at the first call (same storage),
    and raises otherwise. If the capture raises, ``failed`` holds why and every later call runs
    ``fn`` eagerly.
    """

    def __init__(self, fn: Callable[[], Any], fixed: Callable[[], Sequence[Tensor]], device: torch.device,
                 warmup: int = 2, pool: Any = None) -> None:
        self.fn, self.fixed, self.device, self.warmup, self.pool = fn, fixed, torch.device(device), warmup, pool
        self.calls = 0
        self.addresses: tuple[int, ...] | None = None
        self.graph: torch.cuda.CUDAGraph | None = None
        self.record: Callable[[], Any] | None = None
        self.out: Any = None
        self.failed: str | None = None

    @property
    def captured(self) -> bool:
        return self.graph is not None or self.record is not None

    def __call__(self) -> Any:
        self._check_fixed()
        self.calls += 1
        if self.failed is not None:
            return self.fn()
        if self.calls <= self.warmup:
            return self._on_side_stream() if self.device.type == "cuda" else self.fn()
        if self.record is not None:
            return self.record()
        if self.graph is None:
            try:
                if self.device.type != "cuda":
                    return self._record()
                self.graph, self.out = self._capture()
            except Exception as e:  # noqa: BLE001 - any capture error: go on eagerly, say why
                self.failed = f"{type(e).__name__}: {e}"
                log.warning("graph capture failed; this step runs eagerly from now on: %s", self.failed)
                return self.fn()
        self.graph.replay()
        return self.out

    def _check_fixed(self) -> None:
        addresses = tuple(t.data_ptr() for t in self.fixed())
        if self.addresses is None:
            self.addresses = addresses
        elif addresses != self.addresses:
            moved = [i for i, (a, b) in enumerate(zip(addresses, self.addresses)) if a != b]
            raise RuntimeError(f"Replay: fixed tensor(s) {moved} were replaced since the first call; a replayed "
                               "graph would read and write the old ones (update them in place)")

    def _record(self) -> Any:
        """Off a GPU: run ``fn`` once while ``make_fx`` records its ATen operations; later calls replay the record."""
        outputs = []

        def run() -> Any:
            outputs.append(self.fn())
            return outputs[-1]

        self.record = make_fx(run)()
        return outputs[0]

    def _capture(self) -> tuple[torch.cuda.CUDAGraph, Any]:
        """Record ``fn`` (its kernels are recorded, not run: the replay that follows runs them)."""
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=self.pool):
            out = self.fn()
        return graph, out

    def _on_side_stream(self) -> Any:
        main, side = torch.cuda.current_stream(self.device), torch.cuda.Stream(self.device)
        side.wait_stream(main)
        with torch.cuda.stream(side):
            out = self.fn()
        main.wait_stream(side)
        return out
