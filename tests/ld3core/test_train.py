import math

import pytest
import torch
from train_support import DEN, SCH, l2, small_cfg, starts

from ld3core.train import radius, train


def test_training_lowers_validation_loss_below_the_start(pairs):
    cfg = small_cfg()
    states = []
    res = train(DEN, *pairs, starts(cfg), cfg, l2, on_checkpoint=states.append)
    first = res.history[0]["val_hard"]
    assert res.iterations == 12
    assert res.val_hard < min(first) * 0.9, (res.val_hard, first)
    assert (res.t_steps[1:] < res.t_steps[:-1]).all() and res.t_steps[0] == SCH.T and res.t_steps[-1] == SCH.t_min
    assert (res.t_model[1:] < res.t_model[:-1]).all()
    # Decoupled times stay frozen in phase 1 (4 iterations), then move; end points never.
    assert all((s["xic"] == 0).all() for s in states if s["iteration"] <= 4)
    assert states[-1]["xic"][:, 1:-1].abs().max() > 0
    assert (states[-1]["xic"][:, [0, -1]] == 0).all()


def test_hard_loss_mode_never_moves_latents_and_soft_equals_hard(pairs):
    cfg = small_cfg(soft=False, decoupled=False)
    res = train(DEN, *pairs, starts(cfg), cfg, l2)
    assert torch.equal(res.t_model, res.t_steps)
    assert all(h["val_hard"] == h["val_soft"] for h in res.history)


def test_soft_latents_stay_in_the_r_ball(pairs):
    cfg = small_cfg(gamma=0.05)
    states = []
    train(DEN, *pairs, starts(cfg), cfg, l2, on_checkpoint=states.append)
    st = states[-1]
    r = radius(cfg, 2, SCH.sigma_T)
    moved = (st["x_train"] - pairs[0].x_T.unsqueeze(0)).flatten(2).norm(dim=-1)
    assert moved.max() <= r * (1 + 1e-9)
    assert moved.max() > 0.5 * r  # and they did move
    assert (st["x_val"] - pairs[1].x_T.unsqueeze(0)).flatten(2).norm(dim=-1).max() > 0


def test_resumed_run_ends_bit_for_bit_where_the_uninterrupted_one_ends(pairs):
    cfg = small_cfg()
    states = []
    full = train(DEN, *pairs, starts(cfg), cfg, l2, on_checkpoint=states.append)
    mid = next(s for s in states if s["iteration"] == 6)
    resumed = train(DEN, *pairs, starts(cfg), cfg, l2, resume=mid)
    assert torch.equal(resumed.t_steps, full.t_steps)
    assert torch.equal(resumed.t_model, full.t_model)
    assert resumed.history == full.history


def test_should_stop_hands_back_a_state_that_finishes_the_run(pairs):
    cfg = small_cfg()
    full = train(DEN, *pairs, starts(cfg), cfg, l2)
    calls, saved = [0], []

    def stop():
        calls[0] += 1
        return calls[0] > 5

    part = train(DEN, *pairs, starts(cfg), cfg, l2, should_stop=stop, on_checkpoint=saved.append)
    assert part.stopped and part.iterations == 5
    rest = train(DEN, *pairs, starts(cfg), cfg, l2, resume=saved[-1])
    assert torch.equal(rest.t_steps, full.t_steps)


def test_resume_refuses_another_configuration(pairs):
    cfg = small_cfg()
    states = []
    train(DEN, *pairs, starts(cfg), cfg, l2, on_checkpoint=states.append)
    with pytest.raises(ValueError, match="different LD3 configuration"):
        train(DEN, *pairs, starts(cfg), cfg.but(lr_xi=1e-3), l2, resume=states[1])


def test_a_state_saved_before_the_final_rule_resumes_as_sigma_min(pairs):
    cfg = small_cfg()
    states = []
    full = train(DEN, *pairs, starts(cfg), cfg, l2, on_checkpoint=states.append)
    old = {**states[2], "config": {k: v for k, v in states[2]["config"].items() if k != "final"}}
    resumed = train(DEN, *pairs, starts(cfg), cfg, l2, resume=old)
    assert torch.equal(resumed.t_steps, full.t_steps)
    with pytest.raises(ValueError, match="different LD3 configuration"):
        train(DEN, *pairs, starts(cfg), cfg.but(final="zero"), l2, resume=old)


@pytest.mark.parametrize("solver", ["euler", "dpmpp_2m", "unipc", "heun"])
def test_final_zero_learns_with_the_last_step_onto_the_data_prediction(pairs, solver):
    """With final="zero" every solve ends at t = 0: the first validation measures the starts on
    grids ending at 0; the learned times still end at t_min (the stored anchor) and are finite."""
    from ld3core.solvers import final_grid, get_solver

    cfg = small_cfg(solver=solver, nfe=5, final="zero")
    init = starts(cfg)
    res = train(DEN, *pairs, init, cfg, l2)
    va = pairs[1]
    fn = get_solver(solver).fn
    for k in range(init.shape[0]):
        want = float(l2(fn(DEN, va.x_T, final_grid(init[k], "zero")), va.x_0).mean())
        at_min = float(l2(fn(DEN, va.x_T, init[k]), va.x_0).mean())
        assert res.history[0]["val_hard"][k] == pytest.approx(want, rel=1e-9) and want != pytest.approx(at_min, rel=1e-6)
    assert torch.isfinite(res.t_steps).all() and res.t_steps[-1] == SCH.t_min and math.isfinite(res.val_hard)


class NaNBurst:
    """The exact denoiser, except that calls number [a, b) return NaN."""

    def __init__(self, inner, a, b):
        self.inner, self.schedule, self.a, self.b, self.n = inner, inner.schedule, a, b, 0

    def __call__(self, x, t):
        self.n += 1
        out = self.inner(x, t)
        return out * float("nan") if self.a <= self.n < self.b else out


def test_non_finite_values_restore_the_best_state_and_never_leak(pairs):
    cfg = small_cfg(remat=False)
    den = NaNBurst(DEN, 40, 60)
    res = train(den, *pairs, starts(cfg), cfg, l2)
    assert res.restores >= 1
    assert torch.isfinite(res.t_steps).all() and (res.t_steps[1:] < res.t_steps[:-1]).all()
    assert math.isfinite(res.val_hard)


def test_rematerialization_gives_the_same_training(pairs):
    cfg = small_cfg()
    a = train(DEN, *pairs, starts(cfg), cfg, l2)
    b = train(DEN, *pairs, starts(cfg), cfg.but(remat=False), l2)
    assert torch.allclose(a.t_steps, b.t_steps, rtol=1e-10, atol=1e-12)


def test_starts_trained_side_by_side_equal_starts_trained_alone(pairs):
    cfg = small_cfg()
    both = train(DEN, *pairs, starts(cfg), cfg, l2)
    alone = train(DEN, *pairs, starts(cfg, ("logsnr",)), cfg, l2)
    assert torch.allclose(both.starts[1]["t_steps"], alone.starts[0]["t_steps"], rtol=1e-9, atol=1e-12)


def test_bad_start_shape_is_refused(pairs):
    cfg = small_cfg()
    with pytest.raises(ValueError, match="init_times"):
        train(DEN, *pairs, torch.zeros(2, 3, dtype=torch.float64), cfg, l2)


def test_reduce_on_plateau_lowers_rates_to_the_floor_and_never_raises_them(pairs):
    cfg = small_cfg(patience=1, factor=0.5, lr_xi=0.5, min_lr_xi=0.1, val_every=1)
    res = train(DEN, *pairs, starts(cfg), cfg, l2)
    lrs = [h["lr_xi"][0] for h in res.history]
    assert lrs[0] == 0.5 and min(lrs) == 0.1
    assert all(b <= a for a, b in zip(lrs, lrs[1:]))
    zero = small_cfg(lr_xi=0.0, patience=1, val_every=1)
    assert all(h["lr_xi"] == [0.0, 0.0] for h in train(DEN, *pairs, starts(zero), zero, l2).history)


# The authors' habits, each a switch (issue 10).

def test_restore_goes_back_to_the_best_state_on_a_plateau_and_at_each_epoch_start(pairs):
    cfg = small_cfg(patience=1, factor=0.5, lr_xi=0.5, val_every=1, gamma=0.05)
    ipe = len(pairs[0]) // cfg.batch_size

    def plateau_states(restore):
        states = []
        train(DEN, *pairs, starts(cfg), cfg.but(restore=restore), l2, on_checkpoint=states.append)
        # A decay marks a plateau: the state right after it (within an epoch; at its end the
        # validation latents move after the restore).
        out = [(b, k) for a, b in zip(states, states[1:]) for k in range(2)
               if b["lr_xi"][k] < a["lr_xi"][k] and b["iteration"] % ipe]
        return states, out

    states, plateaus = plateau_states(True)
    assert plateaus, "the settings must provoke plateaus"
    for st, k in plateaus:
        assert torch.equal(st["xi"][k], st["best_xi"][k]) and torch.equal(st["x_val"][k], st["best_x_val"][k])
    epoch_starts = [s for s in states if s["iteration"] % ipe == 0 and 0 < s["iteration"] < states[-1]["iteration"]]
    assert epoch_starts and all(torch.equal(s["xi"], s["best_xi"]) for s in epoch_starts)
    # Without it, the loop goes on from where it is.
    _, plateaus = plateau_states(False)
    assert any(not torch.equal(st["xi"][k], st["best_xi"][k]) for st, k in plateaus)


def test_restored_run_resumes_bit_for_bit(pairs):
    cfg = small_cfg(restore=True, accept_moves=True, val_every=1, select_on="soft", patience=2, gamma=0.05)
    states = []
    full = train(DEN, *pairs, starts(cfg), cfg, l2, on_checkpoint=states.append)
    mid = next(s for s in states if s["iteration"] == 5)
    resumed = train(DEN, *pairs, starts(cfg), cfg, l2, resume=mid)
    assert torch.equal(resumed.t_steps, full.t_steps) and resumed.history == full.history


def test_accepted_moves_keep_only_the_latents_whose_loss_fell(pairs):
    from ld3core.train import _Run

    cfg = small_cfg(accept_moves=True)
    run = _Run(DEN, *pairs, starts(cfg), cfg, l2)
    old, moved = run.x_train[:, :2].clone(), run.x_train[:, :2] + 0.1
    t, tc = run.times(run.xi, run.xic)
    new_loss = run.losses(*run.solve(moved, t, tc, None), pairs[0].x_0[:2])
    # Sample 0's old loss is above its new one (kept), sample 1's below (refused).
    kept, keep = run._accepted(moved, old, torch.stack([new_loss[:, 0] + 1, new_loss[:, 1] - 1], 1), pairs[0].x_0[:2], None)
    assert keep[:, 0].all() and not keep[:, 1].any()
    assert torch.equal(kept[:, 0], moved[:, 0]) and torch.equal(kept[:, 1], old[:, 1])


def test_latent_rate_halves_after_an_epoch_where_no_validation_latent_moved(pairs):
    # A zero radius projects every move back onto x_T: nothing ever moves.
    cfg = small_cfg(gamma=0.0)
    epochs = cfg.phase1_epochs + cfg.phase2_epochs
    for accept, want in ((True, cfg.lr_x / cfg.nfe * 0.5**epochs), (False, cfg.lr_x / cfg.nfe)):
        states = []
        train(DEN, *pairs, starts(cfg), cfg.but(accept_moves=accept), l2, on_checkpoint=states.append)
        assert torch.allclose(states[-1]["lr_x"], torch.full((2,), want, dtype=states[-1]["lr_x"].dtype))


@pytest.mark.parametrize("kw", [dict(val_every=2), dict(val_every=1, restore=True), dict(val_every=3, restore=True),
                                dict(val_every=1, select_on="soft")])
def test_validation_passes_counts_what_train_does(pairs, kw):
    from ld3core.train import validation_passes

    cfg = small_cfg(**kw)
    res = train(DEN, *pairs, starts(cfg), cfg, l2)
    full, single = validation_passes(cfg, len(pairs[0]) // cfg.batch_size)
    assert len(res.history) == full + single
    assert sum(h["val_hard"] is not None and h["val_soft"] is not None for h in res.history) == full


def test_soft_selection_measures_the_hard_loss_at_epoch_ends_and_for_the_result(pairs):
    cfg = small_cfg(val_every=1, select_on="soft")
    res = train(DEN, *pairs, starts(cfg), cfg, l2)
    assert any(h["val_hard"] is None for h in res.history)
    assert all(h["val_soft"] is not None for h in res.history)
    assert math.isfinite(res.val_hard) and math.isfinite(res.val_soft)
    assert res.val_soft == min(h["best"][res.start] for h in res.history)


# Conditional models: every pass uses each sample's own condition.

def test_conditional_validation_uses_each_samples_condition(cond_pairs):
    from ld3core.solvers import get_solver

    model, tr, va = cond_pairs
    cfg = small_cfg(val_batch_size=6)  # two starts: chunks of 3 validation samples
    res = train(model, tr, va, starts(cfg), cfg, l2)
    first = res.history[0]["val_hard"]
    init = starts(cfg)
    for k in range(2):
        alone = [l2(get_solver("euler").fn(model.bind(va.cond[i : i + 1]), va.x_T[i : i + 1], init[k]), va.x_0[i : i + 1])
                 for i in range(len(va))]
        assert first[k] == pytest.approx(float(torch.cat(alone).mean()), rel=1e-10)
    assert res.val_hard < min(first) * 0.9
    # The same pairs under the wrong labels are a different problem.
    wrong = type(va)(va.x_T, va.x_0, (va.cond + 1) % 3)
    other = train(model, tr, wrong, starts(cfg), cfg.but(phase1_epochs=0, phase2_epochs=1), l2)
    assert other.history[0]["val_hard"][0] > 2 * first[0]


def test_conditional_resume_is_bit_for_bit(cond_pairs):
    model, tr, va = cond_pairs
    cfg = small_cfg()
    states = []
    full = train(model, tr, va, starts(cfg), cfg, l2, on_checkpoint=states.append)
    resumed = train(model, tr, va, starts(cfg), cfg, l2, resume=next(s for s in states if s["iteration"] == 6))
    assert torch.equal(resumed.t_steps, full.t_steps) and torch.equal(resumed.t_model, full.t_model)
    assert resumed.history == full.history


def test_conditioning_must_match_the_pairs(pairs, cond_pairs):
    model, tr, va = cond_pairs
    cfg = small_cfg()
    with pytest.raises(ValueError, match="conditional denoiser needs pairs with conditions"):
        train(model, *pairs, starts(cfg), cfg, l2)
    with pytest.raises(ValueError, match="conditional denoiser needs pairs with conditions"):
        train(DEN, tr, va, starts(cfg), cfg, l2)
    with pytest.raises(ValueError, match="both carry conditions"):
        train(model, tr, pairs[1], starts(cfg), cfg, l2)
