"""The shipped digit classifier (ld3core.classifier): verified loading, accuracy, FD-digits features."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from ld3core import classifier as clf
from ld3core.feature_stats import FeatureStats

REPO = Path(__file__).resolve().parents[2]
FOLDER = REPO / "models" / "digits-classifier"


def _digits_and_labels():
    spec = importlib.util.spec_from_file_location("train_classifier_for_test", REPO / "scripts" / "train_classifier.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the script's dataclasses look their module up there
    spec.loader.exec_module(module)
    return module, *module.digits_with_labels()


@pytest.fixture(scope="module")
def net():
    return clf.load_classifier(FOLDER)


def test_loads_frozen_in_eval_mode(net):
    assert not net.training
    assert not any(p.requires_grad for p in net.parameters())


def test_held_out_accuracy_matches_the_card(net):
    module, x, y = _digits_and_labels()
    _, test = module.split(y, seed=0)
    with torch.no_grad():
        acc = (net(x[test]).argmax(1) == y[test]).float().mean().item()
    assert acc >= 0.97
    assert f"{acc * 100:.2f}%" in (FOLDER / "MODEL_CARD.md").read_text()


def test_features_shape_and_fd_separates_real_from_noise(net):
    _, x, _ = _digits_and_labels()
    g = torch.Generator().manual_seed(0)
    real = clf.classifier_features(net, x)
    assert real.shape == (len(x), clf.FEATURE_DIM) and real.dtype == torch.float64
    a, b = FeatureStats.of(real[::2]), FeatureStats.of(real[1::2])
    noise = FeatureStats.of(clf.classifier_features(net, torch.rand(500, 1, 16, 16, generator=g) * 2 - 1))
    blurred = FeatureStats.of(clf.classifier_features(net, torch.nn.functional.avg_pool2d(x, 3, 1, 1)))
    assert a.frechet(b) < blurred.frechet(a) < noise.frechet(a)


def test_other_sizes_and_rgb_are_brought_to_16px_grey():
    x = torch.rand(3, 1, 32, 32) * 2 - 1
    rgb = torch.cat([x, -x, x], 1)  # grey = channel mean = x / 3
    y = clf.to_classifier_input(rgb)
    assert y.shape == (3, 1, 16, 16)
    assert torch.allclose(y, clf.to_classifier_input(x / 3), atol=1e-6)
    z = clf.to_classifier_input(torch.full((1, 3, 32, 32), 0.25))
    assert torch.allclose(z, torch.full((1, 1, 16, 16), 0.25))
    assert torch.equal(clf.to_classifier_input(torch.full((1, 1, 16, 16), 3.0)), torch.ones(1, 1, 16, 16))
    with pytest.raises(ValueError, match="images"):
        clf.to_classifier_input(torch.zeros(1, 2, 16, 16))


def test_missing_or_tampered_weights_are_refused(tmp_path):
    with pytest.raises(clf.ClassifierError, match="train_classifier.py"):
        clf.load_classifier(tmp_path)
    data = bytearray((FOLDER / clf.WEIGHTS_FILE).read_bytes())
    data[-1] ^= 1
    (tmp_path / clf.WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(clf.ClassifierError, match="expected " + clf.CLASSIFIER_SHA256):
        clf.load_classifier(tmp_path)
