"""worker.version: the stored fields of a schedule version (the whole version: tests/worker/test_runner.py)."""

from __future__ import annotations

import math

import pytest
import torch

from ld3core.schedules import EDM, RectifiedFlow, VPDiscrete
from registry.catalog import ModelSpec
from worker.version import json_safe, model_sha256, step_sigmas


def test_step_sigmas_are_each_schedules_sampler_sigmas():
    t = torch.tensor([80.0, 1.0, 0.002], dtype=torch.float64)
    assert step_sigmas(EDM(), t) == pytest.approx([80.0, 1.0, 0.002])
    flow = torch.tensor([1.0 - 1e-3, 0.5, 1e-3], dtype=torch.float64)
    assert step_sigmas(RectifiedFlow(), flow) == pytest.approx(flow.tolist())  # flow sigmas live in [0, 1]
    vp = VPDiscrete.linear()
    tv = torch.tensor([1.0, 0.5, vp.t_min], dtype=torch.float64)
    assert step_sigmas(vp, tv) == pytest.approx((vp.sigma(tv) / vp.alpha(tv)).tolist())


def test_an_analytic_model_is_hashed_by_its_catalog_entry_description_aside():
    entry = {"key": "gmm2d", "format": "analytic", "location": "gmm2d-edm", "schedule": "builtin",
             "prediction": "builtin", "sample_shape": [2]}
    h = model_sha256(ModelSpec.from_dict(entry))
    assert len(h) == 64 and h == model_sha256(ModelSpec.from_dict({**entry, "description": "another text"}))
    assert h != model_sha256(ModelSpec.from_dict({**entry, "location": "gmm64-vp", "sample_shape": [64]}))


def test_json_safe_stores_non_finite_numbers_as_null():
    assert json_safe({"a": [1.0, math.nan, (math.inf, 2)], "b": "x"}) == {"a": [1.0, None, [None, 2]], "b": "x"}
