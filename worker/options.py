"""A stored job's options: ld3core's ``JobConfig`` and the model's conditioning.

The options were validated when the job was submitted; they are validated again here, so that a
job never runs with an option silently dropped. Every option left unset takes its default from
``ld3core.config`` (the latent recipe's for latent models), through the same ``job_config`` as
``ld3 optimize``.
"""

from __future__ import annotations

from typing import Any

from ld3core import config
from ld3core.config import JobConfig
from registry.schemas import JobOptionRules, JobOptions


def job_config(solver: str, nfe: int, options: dict[str, Any], *, latent: bool = False) -> JobConfig:
    """The ld3core ``JobConfig`` of a job: its solver and NFE and its stored options, with the
    paper's pixel or latent recipe for the options left unset."""
    return config.job_config(solver, nfe, JobOptions.model_validate(options).ld3_options(), latent=latent)


def conditioning(options: dict[str, Any]) -> dict[str, Any]:
    """The job's guidance, prompts and class labels (None where not given), as the keywords of
    ``worker.sampling``'s functions."""
    return {name: options.get(name) for name in JobOptionRules.model_fields}
