"""Teacher pairs of the analytic models in train_support, shared by the training-loop tests."""

import pytest
import torch
from train_support import DEN, TEACHER, class_model

from ld3core.teacher import teacher_pairs


@pytest.fixture(scope="module")
def pairs():
    tr = teacher_pairs(DEN, TEACHER, range(8), (2,), dtype=torch.float64)
    va = teacher_pairs(DEN, TEACHER, range(100, 108), (2,), dtype=torch.float64)
    return tr, va


@pytest.fixture(scope="module")
def cond_pairs():
    model = class_model()
    tr = teacher_pairs(model, TEACHER, range(8), (2,), dtype=torch.float64, cond=torch.arange(8) % 3)
    va = teacher_pairs(model, TEACHER, range(100, 108), (2,), dtype=torch.float64, cond=torch.arange(8) % 3)
    return model, tr, va
