import pytest
import torch

from worker.digits import load_digits, real_digits


def test_load_digits_shapes_range_and_labels():
    x, y = load_digits(16)
    assert x.shape == (1797, 1, 16, 16) and x.dtype == torch.float32
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0
    assert float(x.min()) == -1.0  # background pixels (value 0) map to -1
    assert y.shape == (1797,) and set(y.tolist()) == set(range(10))


def test_load_digits_native_size_is_the_sklearn_images():
    from sklearn.datasets import load_digits as sk_digits

    x, _ = load_digits(8)
    expected = torch.tensor(sk_digits().images, dtype=torch.float32).unsqueeze(1) / 8.0 - 1.0
    torch.testing.assert_close(x, expected)


def test_real_digits_is_cached_and_equals_load_digits():
    assert real_digits(16) is real_digits(16)
    torch.testing.assert_close(real_digits(16), load_digits(16)[0])


def test_load_digits_refuses_a_nonpositive_size():
    with pytest.raises(ValueError, match="size"):
        load_digits(0)
