"""Feature statistics and the reference-statistics cache (ld3core.feature_stats)."""

import pytest
import torch

from ld3core.feature_stats import FeatureStats, cache_dir, reference_stats, stats_path


def test_stats_are_sample_mean_and_unbiased_covariance():
    f = torch.randn(50, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = FeatureStats.of(f)
    assert s.n == 50
    assert torch.allclose(s.mu, f.mean(0))
    assert torch.allclose(s.cov, torch.cov(f.T))
    assert s.frechet(s) == pytest.approx(0.0, abs=1e-9)
    shifted = FeatureStats.of(f + torch.tensor([3.0, 0.0, 4.0], dtype=torch.float64))
    assert s.frechet(shifted) == pytest.approx(25.0, rel=1e-9)  # same covariance: |mu1 - mu2|^2


def test_refuses_one_row_and_mismatched_dimensions():
    with pytest.raises(ValueError, match="two rows"):
        FeatureStats.of(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="dimensions differ"):
        FeatureStats.of(torch.randn(5, 2)).frechet(FeatureStats.of(torch.randn(5, 3)))


def test_cache_computes_once_then_reads(tmp_path):
    f = torch.randn(20, 4, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    calls = []

    def compute():
        calls.append(1)
        return f

    a = reference_stats("clf", "ab" * 32, "digits", 16, compute, root=tmp_path)
    b = reference_stats("clf", "ab" * 32, "digits", 16, compute, root=tmp_path)
    assert len(calls) == 1
    assert torch.equal(a.mu, b.mu) and torch.equal(a.cov, b.cov) and b.n == 20
    assert torch.allclose(b.mu, f.mean(0))
    # Another extractor hash or resolution is another entry.
    reference_stats("clf", "cd" * 32, "digits", 16, compute, root=tmp_path)
    reference_stats("clf", "ab" * 32, "digits", 32, compute, root=tmp_path)
    assert len(calls) == 3
    assert len(list(tmp_path.glob("*.safetensors"))) == 3


def test_missing_or_corrupt_file_is_recomputed(tmp_path):
    f = torch.randn(10, 2, dtype=torch.float64)
    path = stats_path("clf", "ab" * 32, "digits", 16, tmp_path)
    reference_stats("clf", "ab" * 32, "digits", 16, lambda: f, root=tmp_path)
    path.write_bytes(b"garbage")
    s = reference_stats("clf", "ab" * 32, "digits", 16, lambda: f * 2, root=tmp_path)
    assert torch.allclose(s.mu, 2 * f.mean(0))
    path.unlink()
    s = reference_stats("clf", "ab" * 32, "digits", 16, lambda: f * 3, root=tmp_path)
    assert torch.allclose(s.mu, 3 * f.mean(0))


def test_cache_dir_follows_env(monkeypatch, tmp_path):
    monkeypatch.setenv("LD3_CACHE_DIR", str(tmp_path))
    assert cache_dir() == tmp_path / "stats"
    assert stats_path("inception-fid", "7f" * 32, "sklearn-digits", 16).parent == tmp_path / "stats"


def test_key_parts_are_checked():
    with pytest.raises(ValueError, match="dataset"):
        stats_path("clf", "ab", "../etc", 16)
    with pytest.raises(ValueError, match="resolution"):
        stats_path("clf", "ab", "digits", 0)
