"""ld3core.graphs and the capture contract of ld3core.train.

CI has no GPU, so a CUDA graph is never captured here (the one CUDA test runs on a lent device,
``benchmarks/gpu.sh``). What a capture needs of the code is tested on the CPU instead:
- off a GPU ``Replay`` records a step's ATen operations once (``make_fx``) and replays the
  record without its Python, as a CUDA graph replays kernels, and checks that the step's
  tensors stay in place; training with ``graphs=True`` through restores, accepted moves,
  non-finite recoveries and a resume gives the eager run's result bit for bit;
- an iteration and a validation pass run on the meta device, where any value read by the host
  (``.item()``, ``.tolist()``, ``bool()``, a data-dependent shape) raises, and after one call
  they touch no host tensor (no host-to-device copy inside a graph).
"""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from train_support import DEN, l2, starts
from train_support import small_cfg as cfg_of

from ld3core.config import LD3Config
from ld3core.denoisers import GuidedNetwork, NetworkDenoiser
from ld3core.graphs import Replay
from ld3core.losses import make_loss
from ld3core.schedules import VPDiscrete
from ld3core.teacher import Pairs
from ld3core.train import STATE_TENSORS, _Run, train


class NaNWhile:
    """The exact denoiser, whose outputs are NaN while ``on`` (a tensor, so that a replayed step reads
    it as it is now) is set; ``should_stop`` sets it for iterations [a, b). (A Python call counter,
    as test_train's NaN burst uses, is Python state that a replay does not run.)"""

    def __init__(self, inner, a, b):
        self.inner, self.schedule, self.a, self.b = inner, inner.schedule, a, b
        self.on, self.iteration = torch.zeros((), dtype=torch.bool), 0

    def __call__(self, x, t):
        out = self.inner(x, t)
        return torch.where(self.on, torch.nan, out)

    def should_stop(self):
        self.on.fill_(self.a <= self.iteration < self.b)
        self.iteration += 1
        return False


# Replay.
def test_replay_off_a_gpu_records_the_tensor_work_once_and_replays_it_without_python():
    """Two warm-up calls, one recorded call, then replays: the tensor work runs every time, the
    Python of the step only for the first three (as with a CUDA graph)."""
    state = torch.zeros(3)
    calls = []

    def fn():
        calls.append(1)
        state.add_(1)
        return state * 2

    replay = Replay(fn, lambda: [state], torch.device("cpu"))
    outs = [replay() for _ in range(5)]
    assert len(calls) == 3 and torch.equal(state, torch.full((3,), 5.0))
    assert [float(o[0]) for o in outs] == [2.0, 4.0, 6.0, 8.0, 10.0] and replay.captured


def test_a_value_read_on_the_host_is_baked_into_the_record():
    """What the graph contract forbids shows: a step that branches on a tensor's value keeps, on
    replay, the branch it took when it was recorded (so the replayed run differs from the eager one)."""
    state = torch.zeros(1)

    def fn():
        state.add_(1 if float(state) < 2.5 else 100)

    replay = Replay(fn, lambda: [state], torch.device("cpu"))
    for _ in range(5):
        replay()
    assert float(state) == 5.0  # eagerly: 1 + 1 + 1 + 100 + 100 = 203


def test_replay_refuses_a_tensor_replaced_between_calls():
    box = {"state": torch.zeros(3)}
    replay = Replay(lambda: box["state"].add_(1), lambda: [box["state"]], torch.device("cpu"))
    replay()
    box["state"].copy_(torch.ones(3))  # in place: fine
    replay()
    box["state"] = box["state"] + 1  # a new tensor: a graph would keep writing the old one
    with pytest.raises(RuntimeError, match=r"fixed tensor\(s\) \[0\] were replaced since the first call"):
        replay()


# Training with graphs=True: the contract holds through a whole run, and the result is eager's.
CASES = {
    "euler": dict(),
    "soft, decoupled, accepted moves, restore": dict(solver="dpmpp_2m", accept_moves=True, restore=True, patience=2),
    "lambda mode, final zero": dict(solver="unipc", nfe=5, mode="lambda", final="zero"),
    "hard loss, no remat": dict(solver="ipndm", soft=False, remat=False),
    "heun, selection on hard": dict(solver="heun", nfe=5, select_on="hard"),
}


def same_training(a, b):
    assert torch.equal(a.t_steps, b.t_steps) and torch.equal(a.t_model, b.t_model)
    assert repr(a.history) == repr(b.history) and a.restores == b.restores  # repr: NaN equals NaN


@pytest.mark.parametrize("case", CASES)
def test_training_with_graphs_is_eager_training_bit_for_bit(pairs, case):
    cfg = cfg_of(**CASES[case])
    eager = train(DEN, *pairs, starts(cfg), cfg, l2)
    same_training(train(DEN, *pairs, starts(cfg), cfg, l2, graphs=True), eager)


def test_graphs_survive_non_finite_recovery_and_resume(pairs):
    cfg = cfg_of(remat=False)
    nan = NaNWhile(DEN, 3, 5)
    eager = train(nan, *pairs, starts(cfg), cfg, l2, should_stop=nan.should_stop)
    states = []
    nan = NaNWhile(DEN, 3, 5)
    graphed = train(nan, *pairs, starts(cfg), cfg, l2, graphs=True, on_checkpoint=states.append, should_stop=nan.should_stop)
    assert eager.restores >= 1
    same_training(graphed, eager)
    mid = next(s for s in states if s["iteration"] == 6)
    resumed = train(DEN, *pairs, starts(cfg), cfg, l2, graphs=True, resume=mid)
    assert torch.equal(resumed.t_steps, train(DEN, *pairs, starts(cfg), cfg, l2, resume=mid).t_steps)


def test_conditional_training_with_graphs_is_eager_training(cond_pairs):
    model, tr, va = cond_pairs
    cfg = cfg_of(solver="dpmpp_2m", val_batch_size=6)
    same_training(train(model, tr, va, starts(cfg), cfg, l2, graphs=True), train(model, tr, va, starts(cfg), cfg, l2))


def test_a_collapsed_step_is_a_non_finite_loss_not_an_exception(pairs):
    """Step times whose softmax underflows give a zero-length step: under device checks that grid is
    invalid, so the iteration skips that start's update and validation restores it."""
    cfg = cfg_of(solver="dpmpp_2m", remat=False)
    run = _Run(DEN, *pairs, starts(cfg), cfg, l2)
    run.xi[0, 1] = -1e4  # step 1 of start 0 has length 0
    before = run.xi.clone()
    run.step(torch.tensor([0, 1]))
    assert run.bad.tolist() == [True, False]
    assert torch.equal(run.xi[0], before[0]) and not torch.equal(run.xi[1], before[1])


# No value read by the host inside an iteration or a validation.
class HostTensors(TorchDispatchMode):
    """Records every operation that brings a host tensor to the device: a copy, or an operation on
    both with a host tensor of more than one value (a one-value host tensor in arithmetic is a
    scalar argument; host-only work, such as a schedule constant computed from Python floats,
    runs once at capture and is fine)."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        flat, _ = tree_flatten((args, kwargs or {}, out))
        tensors = [a for a in flat if isinstance(a, torch.Tensor)]
        copy = func in (torch.ops.aten._to_copy.default, torch.ops.aten.copy_.default)  # a copy: even of one value
        host = any(a.device.type == "cpu" and (a.dim() > 0 or copy) for a in tensors)
        if host and any(a.device.type == "meta" for a in tensors):
            self.seen.append(str(func))
        return out


class TinyEps(torch.nn.Module):
    """A small conditional eps-network: what matters is that it is a torch module on the run's device."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 3, padding=1)
        self.embed = torch.nn.Embedding(4, 3)

    def forward(self, x, t, cond=None):
        h = self.conv(x) * (t / 1000).reshape(-1, 1, 1, 1)
        return h if cond is None else h + self.embed(cond).reshape(-1, 3, 1, 1)


def tiny_model(kind):
    """(denoiser, modules, sample shape, conditions or None, decode or None) of a small network of
    ``kind``: "toy" (a conv), "guided" (the toy with labels and guidance), "unet" (diffusers'
    UNet2DModel, as benchmarks/train_cost.py runs), "sd" (diffusers' UNet2DConditionModel on text
    embeddings with guidance, its loss after an AutoencoderKL decoder, as benchmarks/sd_job_cost.py)."""
    from diffusers import UNet2DConditionModel, UNet2DModel

    from tests.tiny_pipelines import tiny_vae

    torch.manual_seed(0)
    sch = VPDiscrete.linear()
    if kind in ("toy", "guided"):
        net = TinyEps()
        if kind == "toy":
            return NetworkDenoiser(lambda x, t: net(x, t), sch, "eps"), [net], (3, 8, 8), None, None
        return GuidedNetwork(net, sch, "eps", torch.tensor(3), 2.0), [net], (3, 8, 8), torch.tensor([0, 1, 2, 0, 1, 2]), None
    if kind == "unet":
        unet = UNet2DModel(sample_size=8, in_channels=3, out_channels=3, block_out_channels=(16, 16), layers_per_block=1,
                           norm_num_groups=8, down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D")).eval().requires_grad_(False)
        return NetworkDenoiser(lambda x, t: unet(x, t).sample, sch, "eps"), [unet], (3, 8, 8), None, None
    unet = UNet2DConditionModel(sample_size=4, in_channels=4, out_channels=4, block_out_channels=(16, 16), layers_per_block=1,
                                norm_num_groups=8, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), cross_attention_dim=16,
                                attention_head_dim=4).eval().requires_grad_(False)
    vae = tiny_vae(3).eval().requires_grad_(False)
    den = GuidedNetwork(lambda x, t, c: unet(x, t, encoder_hidden_states=c).sample, VPDiscrete.scaled_linear(), "eps",
                        torch.zeros(8, 16), 7.5)
    return den, [unet, vae], (4, 4, 4), torch.randn(6, 8, 16), lambda z: vae.decode(z / 0.5).sample


def meta_run(cfg, kind="toy"):
    """A run built on the CPU, then moved to the meta device (state, pairs, network, loss)."""
    den, modules, shape, cond, decode = tiny_model(kind)
    x = torch.randn(6, *shape, generator=torch.Generator().manual_seed(0))
    tr = Pairs(x[:4], x[:4].flip(1), None if cond is None else cond[:4])
    va = Pairs(x[4:], x[4:], None if cond is None else cond[4:])
    loss = make_loss(cfg.loss, decode=decode)
    run = _Run(den, tr, va, starts(cfg, schedule=den.schedule), cfg, loss)
    meta = torch.device("meta")
    for name in STATE_TENSORS:
        setattr(run, name, getattr(run, name).to(meta))
    run.opt = {k: v.to(meta) for k, v in run.opt.items()}
    run.bad, run.loss_sum, run.idx = run.bad.to(meta), run.loss_sum.to(meta), run.idx.to(meta)
    run.train, run.val = [Pairs(*(None if v is None else v.to(meta) for v in (p.x_T, p.x_0, p.cond))) for p in (tr, va)]
    for module in modules:
        module.to(meta)
    if hasattr(den, "uncond"):  # a loaded model's null condition lives on its device
        den.uncond = den.uncond.to(meta)
    if isinstance(getattr(loss, "__self__", loss), torch.nn.Module):
        loss.to(meta)
    for lpips in [c for c in getattr(loss, "__closure__", None) or () if isinstance(c.cell_contents, torch.nn.Module)]:
        lpips.cell_contents.to(meta)
    return run


META_CASES = {
    "lpips, soft, decoupled, accepted moves": (dict(solver="dpmpp_2m", loss="lpips", accept_moves=True), "toy"),
    "unipc, lambda mode, final zero, guided": (dict(solver="unipc", nfe=5, mode="lambda", final="zero"), "guided"),
    "heun, target diffusers (integer timesteps)": (dict(solver="heun", nfe=5, target="diffusers", decoupled=False, final="zero"), "toy"),
    "ipndm, hard loss": (dict(solver="ipndm", soft=False, loss="l2"), "toy"),
    "diffusers UNet2DModel, lpips_alex": (dict(solver="unipc", loss="lpips_alex"), "unet"),
    "SD layout: text, guidance, lpips after the VAE": (dict(solver="dpmpp_2m", nfe=6, loss="lpips_alex"), "sd"),
}


@pytest.mark.parametrize("case", META_CASES)
def test_an_iteration_and_a_validation_read_nothing_on_the_host(case):
    kw, kind = META_CASES[case]
    cfg = LD3Config(**{**dict(nfe=4, loss="l2", phase1_epochs=1, phase2_epochs=1, batch_size=2, val_batch_size=4), **kw})
    run = meta_run(cfg, kind)
    work = [lambda: run._iterate(False), lambda: run._iterate(True), lambda: run._validation_losses(True),
            lambda: run._validation_losses(False)]
    for fn in work:  # raises on any host read: meta tensors have no values
        fn()
    made = []

    def recording(make):
        def made_on(*args, **kw):
            out = make(*args, **kw)
            made.append(out.device.type) if out.device.type != "cpu" else None
            return out
        return made_on

    with pytest.MonkeyPatch.context() as patch, HostTensors() as mode:  # a second call, as capture follows warm-up
        patch.setattr(torch, "tensor", recording(torch.tensor))  # Python data put on the device: a host copy
        patch.setattr(torch, "as_tensor", recording(torch.as_tensor))
        for fn in work:
            fn()
    assert mode.seen == [] and made == []


def test_the_meta_device_catches_a_host_read():
    """The check above can fail: the solvers' host-side grid check, as a plain solve runs it, raises there."""
    from ld3core.solvers import get_solver

    run = meta_run(LD3Config(solver="euler", nfe=4, loss="l2", batch_size=2))
    t = run.times(run.xi, run.xic)[0][0]
    with pytest.raises(RuntimeError, match="meta"):
        get_solver("euler").fn(run.base, run.train.x_T, t)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (run by benchmarks/gpu.sh)")
def test_captured_training_on_cuda_matches_eager(pairs):
    """On a GPU the iterations and validations are replayed CUDA graphs; the learned times are eager's
    to float rounding (the graph runs the same kernels)."""
    device = torch.device("cuda")
    tr, va = [Pairs(p.x_T.to(device), p.x_0.to(device)) for p in pairs]
    for case in CASES.values():
        cfg = cfg_of(**case)
        init = starts(cfg).to(device)
        eager = train(DEN, tr, va, init, cfg, l2)
        graphed = train(DEN, tr, va, init, cfg, l2, graphs=True)
        assert graphed.graphs["failed"] == [] and graphed.graphs["captured"] >= 3  # both phases' iterations, a validation
        torch.testing.assert_close(graphed.t_steps, eager.t_steps, rtol=1e-9, atol=1e-12)
        torch.testing.assert_close(graphed.t_model, eager.t_model, rtol=1e-9, atol=1e-12)


def test_a_failed_capture_goes_on_eagerly_and_says_why(monkeypatch, caplog):
    """On a CUDA device, a step whose capture raises is run eagerly from then on, and the run says so."""
    state = torch.zeros(2)
    monkeypatch.setattr(Replay, "_on_side_stream", lambda self: self.fn())
    monkeypatch.setattr(Replay, "_capture", lambda self: (_ for _ in ()).throw(RuntimeError("operation not permitted")))
    replay = Replay(lambda: state.add_(1), lambda: [state], torch.device("cuda"))
    with caplog.at_level("WARNING", logger="ld3core.graphs"):
        for _ in range(5):
            replay()
    assert torch.equal(state, torch.full((2,), 5.0))  # every call did its work, the failed capture's too
    assert replay.failed == "RuntimeError: operation not permitted" and not replay.captured
    assert "capture failed" in caplog.text and caplog.text.count("capture failed") == 1


def test_training_reports_its_graphs(pairs):
    cfg = cfg_of()
    assert train(DEN, *pairs, starts(cfg), cfg, l2).graphs == {}
    # Both phases' iterations and both kinds of validation, recorded (make_fx on the CPU).
    assert train(DEN, *pairs, starts(cfg), cfg, l2, graphs=True).graphs == {"captured": 4, "failed": []}
