import torch

from ld3core.optim import clip_rows, finite_rows, project_ball, rmsprop_state, rmsprop_step, sgd_step


def test_rmsprop_rows_equal_torch_rmsprop_with_clipping():
    g0 = torch.Generator().manual_seed(0)
    p = torch.randn(3, 5, dtype=torch.float64, generator=g0)
    lrs = torch.tensor([5e-3, 1e-2, 2e-3], dtype=torch.float64)
    refs = [p[k].clone().requires_grad_(True) for k in range(3)]
    opts = [torch.optim.RMSprop([r], lr=float(lrs[k]), momentum=0.9) for k, r in enumerate(refs)]
    state, ok = rmsprop_state(p), torch.ones(3, dtype=torch.bool)
    for _ in range(6):
        g = torch.randn(3, 5, dtype=torch.float64, generator=g0) * 3
        for k in range(3):
            refs[k].grad = g[k].clone()
            torch.nn.utils.clip_grad_norm_([refs[k]], 1.0)
            opts[k].step()
        p = rmsprop_step(p, clip_rows(g, 1.0), state, lrs, ok)
    for k in range(3):
        assert torch.allclose(p[k], refs[k].detach(), rtol=1e-12, atol=1e-14)


def test_masked_rows_keep_parameters_and_state():
    p = torch.ones(2, 3, dtype=torch.float64)
    state = rmsprop_state(p)
    g = torch.tensor([[1.0, 2, 3], [float("nan"), 1, 1]], dtype=torch.float64)
    ok = finite_rows(g)
    assert ok.tolist() == [True, False]
    new = rmsprop_step(p, g, state, torch.tensor([0.1, 0.1], dtype=torch.float64), ok)
    assert torch.equal(new[1], p[1]) and not torch.equal(new[0], p[0])
    assert torch.isfinite(state["square_avg"]).all() and (state["square_avg"][1] == 0).all()
    new = sgd_step(p, g, torch.tensor([0.5, 0.5], dtype=torch.float64), ok)
    assert torch.equal(new[1], p[1]) and torch.allclose(new[0], p[0] - 0.5 * g[0])


def test_project_ball_moves_only_points_outside():
    c = torch.zeros(2, 4, 3, 3)
    x = torch.zeros(2, 4, 3, 3)
    x[0, 0, 0, 0] = 5.0  # outside radius 2: projected onto the sphere
    x[1, 1, 1, 1] = 1.0  # inside: unchanged
    y = project_ball(x, c, 2.0, sample_ndim=3)
    assert torch.allclose(y[0].flatten(1).norm(dim=1)[0], torch.tensor(2.0))
    assert torch.equal(y[1], x[1])
    assert torch.allclose(y[0, 0] / y[0, 0].norm(), x[0, 0] / x[0, 0].norm())
