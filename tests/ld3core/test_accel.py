import torch

from ld3core.accel import compile_denoiser
from ld3core.denoisers import NetworkDenoiser, Rematerialized
from ld3core.schedules import VPLinear
from ld3core.solvers import get_solver


def test_compiled_denoiser_matches_eager_in_value_and_gradient():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 3, 3, padding=1))
    net.requires_grad_(False)
    den = NetworkDenoiser(lambda x, tm: net(x) * (1 + tm[:, None, None, None]), VPLinear(), "eps")
    x = torch.randn(2, 3, 8, 8)
    results = []
    for d in (den, compile_denoiser(den), Rematerialized(compile_denoiser(den))):
        ts = torch.tensor([1.0, 0.5, 0.2, 0.001], dtype=torch.float64, requires_grad=True)
        out = get_solver("dpmpp_2m").fn(d, x, ts)
        results.append((out.detach(), torch.autograd.grad(out.square().sum(), ts)[0]))
    for out, g in results[1:]:
        assert torch.allclose(out, results[0][0], rtol=1e-4, atol=1e-5)
        assert torch.allclose(g, results[0][1], rtol=1e-3, atol=1e-4)
