"""worker.checkpoint: training state to bytes and back, refusing anything that would run code."""

from __future__ import annotations

import pytest
import torch

from worker.checkpoint import state_from_bytes, state_to_bytes


def test_checkpoint_bytes_round_trip_and_refuse_code():
    state = {"xi": torch.randn(2, 5, dtype=torch.float64), "history": [{"val": [1.0, float("inf")], "lr": None}],
             "iteration": 7, "config": {"solver": "euler"}, "opt": {"v": torch.zeros(3)}}
    back = state_from_bytes(state_to_bytes(state))
    assert torch.equal(back["xi"], state["xi"]) and back["history"] == state["history"]
    assert back["iteration"] == 7 and back["config"] == {"solver": "euler"}

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with pytest.raises(Exception, match="[Ww]eights only"):
        state_from_bytes(state_to_bytes({"x": Evil()}))
