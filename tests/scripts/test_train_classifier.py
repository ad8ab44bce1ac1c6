"""scripts/train_classifier.py: split, augmentation, and a short real training run that loads back."""

import importlib.util
import sys
from pathlib import Path

import torch

from ld3core.classifier import DigitsClassifier, load_classifier

REPO = Path(__file__).resolve().parents[2]


def _script():
    spec = importlib.util.spec_from_file_location("train_classifier_under_test", REPO / "scripts" / "train_classifier.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_split_is_stratified_disjoint_and_seeded():
    m = _script()
    _, y = m.digits_with_labels()
    tr, te = m.split(y, seed=0)
    assert len(set(tr.tolist()) & set(te.tolist())) == 0 and len(tr) + len(te) == len(y)
    for c in range(10):
        frac = (y[te] == c).sum().item() / (y == c).sum().item()
        assert abs(frac - m.TEST_FRACTION) < 0.02
    assert torch.equal(m.split(y, seed=0)[1], te) and not torch.equal(m.split(y, seed=1)[1], te)


def test_random_shift_moves_by_at_most_one_pixel():
    m = _script()
    x = torch.full((64, 1, 16, 16), -1.0)
    x[:, :, 8, 8] = 1.0
    s = m.random_shift(x, torch.Generator().manual_seed(0))
    pos = torch.stack([(im[0] == 1).nonzero()[0] for im in s])
    assert ((pos - 8).abs() <= 1).all() and len({tuple(p) for p in pos.tolist()}) > 1


def test_short_training_saves_a_loadable_model_and_card(tmp_path):
    m = _script()
    s = m.train_classifier(tmp_path, epochs=1, command="test")
    assert 0.5 < s["test_acc"] <= 1.0  # one epoch already learns the digits
    net = load_classifier(tmp_path, sha256=s["sha256"])
    assert isinstance(net, DigitsClassifier)
    card = (tmp_path / "MODEL_CARD.md").read_text()
    assert s["sha256"] in card and f"{s['test_acc'] * 100:.2f}%" in card and "`test`" in card
