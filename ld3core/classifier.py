"""A small digit classifier whose penultimate layer is a feature space for a Frechet distance.

FID's Inception features were learned on ImageNet photographs; on 16 px grey digits they
mostly see a blurry blob. A classifier trained on the digits themselves (``scripts/
train_classifier.py``; weights in ``models/digits-classifier/``) gives "FD-digits": the
Frechet distance between Gaussians fitted to its 128-d penultimate features, the analogue of
FID for the small models shipped here.

Inputs are images in [-1, 1], (n, C, H, W), C in {1, 3}: three channels are averaged to grey,
values are clamped to [-1, 1] (what a saved image holds) and other sizes are resized to
16 x 16 (bilinear, antialiased when shrinking, e.g. 32 px latent-model outputs).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .files import file_sha256

SIZE = 16
FEATURE_DIM = 128
N_CLASSES = 10
WEIGHTS_FILE = "classifier.safetensors"
# sha256 of models/digits-classifier/classifier.safetensors (written by scripts/train_classifier.py).
CLASSIFIER_SHA256 = "30a79200c44ec9e7a9e69aadc3e6c778e9cbb32be05bacd052a8bb040647e79c"
TRAIN_HINT = "python scripts/train_classifier.py --out models/digits-classifier"


class ClassifierError(RuntimeError):
    """The classifier weights are missing, corrupted or not the expected ones."""


class DigitsClassifier(nn.Module):
    """Two conv blocks (16 -> 8 -> 4 px), a 128-d hidden layer (the features), 10 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )  # fmt: skip
        self.hidden = nn.Linear(64 * 4 * 4, FEATURE_DIM)
        self.dropout = nn.Dropout(0.3)
        self.head = nn.Linear(FEATURE_DIM, N_CLASSES)

    def features(self, x: Tensor) -> Tensor:
        """(n, 1, 16, 16) in [-1, 1] -> (n, 128) penultimate activations (after the ReLU)."""
        return F.relu(self.hidden(self.convs(x).flatten(1)))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.features(x)))


def to_classifier_input(images: Tensor) -> Tensor:
    """Images (n, C, H, W) in [-1, 1], C in {1, 3} -> (n, 1, 16, 16) float32, clamped to [-1, 1]."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images: expected (n, 1|3, H, W), got {tuple(images.shape)}")
    x = images.detach().float().clamp(-1, 1).mean(1, keepdim=True)
    if x.shape[-2:] != (SIZE, SIZE):
        shrink = min(x.shape[-2:]) > SIZE
        x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False, antialias=shrink)
    return x


def load_classifier(
    folder: str | os.PathLike, *, sha256: str = CLASSIFIER_SHA256, device: torch.device | str = "cpu"
) -> DigitsClassifier:
    """The shipped classifier from ``folder`` (``classifier.safetensors``), hash-checked, frozen,
    in eval mode. A missing file or another digest raises ``ClassifierError``; there is no
    fallback to random weights."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise ClassifierError(f"digits classifier weights {path} are missing; train them with: {TRAIN_HINT}")
    got = file_sha256(path)
    if got != sha256:
        raise ClassifierError(f"digits classifier weights {path} have sha256 {got}, expected {sha256}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise ClassifierError(f"cannot read {path}: {e}") from None
    net = DigitsClassifier()
    net.load_state_dict(state, strict=True)
    return net.requires_grad_(False).eval().to(device)


@torch.no_grad()
def classifier_features(net: DigitsClassifier, images: Tensor, *, batch_size: int = 512) -> Tensor:
    """Penultimate features (n, 128), float64 on the CPU, of images in [-1, 1] (see module doc)."""
    dev = next(net.parameters()).device
    out = [net.features(to_classifier_input(images[i : i + batch_size]).to(dev)).double().cpu()
           for i in range(0, images.shape[0], batch_size)]
    return torch.cat(out) if out else torch.empty(0, FEATURE_DIM, dtype=torch.float64)
