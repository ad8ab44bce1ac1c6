"""``registry.conditioning``: which guidance, class labels and prompts fit a model (the API's 422s
and the worker's ValueErrors both come from here)."""

from __future__ import annotations

import math

import pytest

from registry.catalog import ModelSpec
from registry.conditioning import conditioning_errors

PIXEL = {"format": "diffusers", "location": "m", "schedule": "from_scheduler_config",
         "prediction": "from_scheduler_config", "sample_shape": [1, 8, 8], "sha256": "0" * 64}
UNCONDITIONAL = ModelSpec.from_dict({**PIXEL, "key": "plain"})
CLASSES = ModelSpec.from_dict({**PIXEL, "key": "digits", "conditioning": "class", "num_classes": 10, "null_class": 10})
TEXT = ModelSpec.from_dict({**PIXEL, "key": "sd", "conditioning": "text"})


def fields(errors: list[tuple[str, str]]) -> list[str]:
    return [name for name, _ in errors]


def test_options_that_fit_give_no_error():
    assert conditioning_errors(UNCONDITIONAL) == []
    assert conditioning_errors(CLASSES, guidance=1.5, class_labels=[0, 9]) == []
    assert conditioning_errors(CLASSES) == []  # labels default to every class
    assert conditioning_errors(TEXT, guidance=7.5, prompts=["a digit"]) == []


def test_an_unconditional_model_takes_no_guidance_labels_or_prompts():
    errors = conditioning_errors(UNCONDITIONAL, guidance=3.0, prompts=["a cat"], class_labels=[1])
    assert fields(errors) == ["guidance", "prompts", "class_labels"]  # every misfit, in this order
    guidance, prompts, labels = (reason for _, reason in errors)
    assert guidance == "model 'plain' is unconditional; classifier-free guidance needs a conditional model"
    assert prompts == "model 'plain' takes no text prompts (conditioning 'none')"
    assert labels == "model 'plain' is not class-conditional (conditioning 'none')"


@pytest.mark.parametrize("labels", [[], [True], ["3"], "3", 3])
def test_class_labels_must_be_a_non_empty_list_of_integers(labels):
    (err,) = conditioning_errors(CLASSES, class_labels=labels)
    assert err[0] == "class_labels" and err[1].startswith("need a non-empty list of labels in 0..9, got ")


def test_labels_outside_the_classes_are_named():
    (err,) = conditioning_errors(CLASSES, class_labels=[3, 12, -1, 12])
    assert err == ("class_labels", "need a non-empty list of labels in 0..9, got [3, 12, -1, 12] (outside: [-1, 12])")


@pytest.mark.parametrize("guidance", [-1.0, math.nan, math.inf, True, "2"])
def test_guidance_must_be_a_finite_number_at_least_zero(guidance):
    assert conditioning_errors(CLASSES, guidance=guidance) == [("guidance", f"must be a finite number >= 0, got {guidance!r}")]


@pytest.mark.parametrize("prompts", [None, [], "a cat", ["a cat", 3]])
def test_a_text_model_needs_a_non_empty_list_of_prompts(prompts):
    assert conditioning_errors(TEXT, guidance=7.5, prompts=prompts) == [
        ("prompts", "model 'sd' is text-conditional and needs a non-empty list of prompts")]
    assert fields(conditioning_errors(TEXT, prompts=["a"], class_labels=[0])) == ["class_labels"]
