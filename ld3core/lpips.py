"""LPIPS (Zhang et al., "The Unreasonable Effectiveness of Deep Features as a Perceptual Metric",
v0.1) in plain torch: VGG16 or AlexNet features, channel-normalised, squared difference, learned
1x1 heads, spatial mean, summed over five layers. Weights: ``ld3core.lpips_weights``.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .lpips_weights import load_lpips_weights

MIN_SIZE = 32  # AlexNet's second max-pool needs a >= 32 px input

# Conv widths ("M" = 2x2 max-pool) and the `features` indices of the tapped ReLUs.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
_TAPS = {"vgg": (3, 8, 15, 22, 29), "alex": (1, 4, 7, 9, 11)}
_CHANNELS = {"vgg": (64, 128, 256, 512, 512), "alex": (64, 192, 384, 256, 256)}


def vgg16_features() -> nn.Sequential:
    """torchvision's ``vgg16().features`` up to relu5_3 (same indices, ReLUs not in-place)."""
    layers: list[nn.Module] = []
    c = 3
    for v in _VGG16:
        if v == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(c, v, 3, padding=1), nn.ReLU()]
            c = v
    return nn.Sequential(*layers)


def alexnet_features() -> nn.Sequential:
    """torchvision's ``alexnet().features`` up to relu5 (same indices, ReLUs not in-place)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, 11, stride=4, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(64, 192, 5, padding=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Conv2d(192, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1), nn.ReLU(),
        nn.Conv2d(256, 256, 3, padding=1), nn.ReLU(),
    )  # fmt: skip


class LPIPS(nn.Module):
    """Learned perceptual distance between image batches, frozen and in eval mode.

    Inputs: ``x``, ``y`` of shape (B, C, H, W) with values in [-1, 1] (not clamped), C = 1 or 3;
    one channel is repeated to three. Images with a side below 32 px are upsampled (bilinear,
    ``align_corners=False``), keeping the aspect ratio, so that the shorter side is 32 px,
    before the network; LPIPS at such sizes is a resize-then-compare distance, not the
    metric of the paper. Returns per-sample distances (B,) in the input dtype; differentiable
    w.r.t. both inputs. ``net``: "vgg" (default, as in the LD3 code) or "alex".
    """

    def __init__(self, net: str = "vgg", *, weights_dir: str | os.PathLike | None = None) -> None:
        super().__init__()
        weights = load_lpips_weights(net, cache_dir=weights_dir)
        self.net = net
        self.features = vgg16_features() if net == "vgg" else alexnet_features()
        self.lins = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in _CHANNELS[net])
        self.taps = _TAPS[net]
        # Scaling layer of LPIPS v0.1: [-1, 1] inputs -> roughly ImageNet-normalised.
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1), persistent=False)
        self.load_state_dict(weights, strict=True)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape or x.ndim != 4 or x.shape[1] not in (1, 3):
            raise ValueError(f"LPIPS needs two (B, 1|3, H, W) batches of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
        out_dtype, b = x.dtype, x.shape[0]
        z = torch.cat([x, y]).to(self.shift.dtype)  # one backbone pass for both
        z = self._resize(z.expand(-1, 3, -1, -1))
        z = (z - self.shift) / self.scale
        dist = z.new_zeros(b)
        lin = iter(self.lins)
        for i, layer in enumerate(self.features):
            z = layer(z)
            if i in self.taps:
                f = _unit(z)
                dist = dist + next(lin)((f[:b] - f[b:]) ** 2).mean(dim=(1, 2, 3))
        return dist.to(out_dtype)

    @staticmethod
    def _resize(z: Tensor) -> Tensor:
        h, w = z.shape[-2:]
        if min(h, w) >= MIN_SIZE:
            return z
        s = MIN_SIZE / min(h, w)
        size = (max(MIN_SIZE, math.ceil(h * s - 1e-9)), max(MIN_SIZE, math.ceil(w * s - 1e-9)))
        return F.interpolate(z, size=size, mode="bilinear", align_corners=False)


def _unit(f: Tensor, eps: float = 1e-10) -> Tensor:
    # Unit-normalise over channels (LPIPS's eps). vector_norm's backward is 0 where the norm is 0
    # (a pixel whose ReLUs are all off); sqrt(sum f^2) would give 0 * inf = NaN there.
    return f / (torch.linalg.vector_norm(f, dim=1, keepdim=True) + eps)
