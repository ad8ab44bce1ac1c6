"""Fixtures of the registry tests (the database fixtures are the root tests/conftest.py's)."""

from __future__ import annotations

import pytest

ANALYTIC_SPEC = {"key": "gmm", "format": "analytic", "location": "gmm2d-edm", "schedule": "builtin",
                 "prediction": "builtin", "sample_shape": [2]}


@pytest.fixture
def analytic_spec() -> dict:
    """A valid catalog entry that needs no files (an analytic model)."""
    return dict(ANALYTIC_SPEC)
