"""The LD3 training loop (Algorithm 1, with the authors' recipe and without their defects).

K starts (initial discretizations, e.g. the best heuristics) are trained side by side: one
network call carries every start's batch, each sample with its own step times. Per
iteration and per start: loss = d(Psi_xi(x'_T), Psi_*(x_T)) on a batch (each sample under its
own condition when the pairs carry conditions); RMSprop on xi,
SGD on xi^c (phase 2 only), SGD on x'_T then projection onto ||x'_T - x_T|| <= r sigma_T.
Validation (hard loss from x_T, soft loss from the moved validation x'_T) runs every
``val_every`` iterations, batched, and drives reduce-on-plateau and the best checkpoint
(selected on ``select_on``; the other loss is computed at epoch ends and for the result).

The authors' trainer does three more things, each a switch here so that it can be measured:
``restore`` (after ``patience`` iterations without improvement, and at every epoch start, go
back to the best state: xi, xi^c and, on a plateau, the validation x'_T of that moment; then
decay; their trainer also reloads the training x'_T, but overwrites them at the epoch's end
with the ones it moved meanwhile, so in effect it keeps them, as we do), ``accept_moves`` (a
moved x'_T is kept only where that pair's loss fell, and lr_x halves after an epoch in which
no validation x'_T moved), and a single time-uniform start (``JobConfig.init``).

The loop does no I/O. It reports through ``on_progress``, hands a serialisable state to
``on_checkpoint`` at every validation, polls ``should_stop`` every iteration, and resumes
bit-for-bit from such a state. Non-finite values are caught on the device every iteration
(the update of that start is skipped) and, at the next validation, the start is restored to
its best state with fresh optimizer state. A non-finite or non-monotone schedule is never
returned.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import Tensor

from .config import CONSUMERS, LD3Config
from .consumers import snap_timesteps
from .denoisers import ConditionalDenoiser, Denoiser, Rematerialized, conditioned, is_conditional
from .graphs import Replay
from .optim import clip_rows, finite_rows, project_ball, rmsprop_state, rmsprop_step, sgd_step
from .parameterization import model_times, project_xic, times_from_xi, xi_from_times
from .solvers import DeviceChecks, get_solver
from .teacher import Pairs

LossFn = Callable[[Tensor, Tensor], Tensor]  # (pred, target) -> per-sample loss (B,)


@dataclass
class Progress:
    phase: str
    iteration: int
    total: int
    loss: float | None = None  # mean training loss since the last report (best start)
    val_hard: float | None = None  # best start's current validation losses
    val_soft: float | None = None
    best: float | None = None  # best validation loss so far (selection metric)
    elapsed_s: float = 0.0
    eta_s: float | None = None
    val: float | None = None  # best start's current validation loss on the selection metric


@dataclass
class TrainResult:
    t_steps: Tensor  # (N+1,) the chosen start's best step times
    t_model: Tensor  # (N+1,) its network-input times
    start: int  # index of the chosen start
    val_hard: float
    val_soft: float
    starts: list[dict[str, Any]]  # per start: best val losses, times
    history: list[dict[str, Any]]
    iterations: int
    stopped: bool
    restores: int  # non-finite recoveries
    timings: dict[str, float] = field(default_factory=dict)
    graphs: dict[str, Any] = field(default_factory=dict)  # with graphs=True: steps captured, captures failed (why)


def radius(cfg: LD3Config, sample_numel: int, sigma_T: float) -> float:
    """||x'_T - x_T|| bound: r sigma_T with r = gamma d / NFE^2 (App. B.1)."""
    return cfg.gamma * sample_numel / cfg.nfe**2 * sigma_T


STATE_TENSORS = ("xi", "xic", "x_train", "x_val", "lr_xi", "lr_xic", "lr_x", "best_xi", "best_xic", "best_x_val")


class _Run:
    """Holds the tensors of one training run; methods are the steps of the loop.

    An iteration (``_iterate``) and a validation pass over the current state
    (``_validation_losses``) are pure device work: they read no value on the host (the solvers'
    grid checks stay on the device, ``DeviceChecks``, and an invalid grid counts as a non-finite
    loss), have static shapes, and update the state's tensors in place, never rebinding them,
    so that each can be captured once and replayed as a CUDA graph (``graphs=True``,
    ``ld3core.graphs.Replay``, which emulates that on the CPU). The host reads the
    losses once per validation, where the plateau rule and the non-finite recovery run."""

    def __init__(self, denoiser: Denoiser | ConditionalDenoiser, train: Pairs, val: Pairs, init_times: Tensor, cfg: LD3Config,
                 loss_fn: LossFn, graphs: bool = False):
        self.cfg, self.loss_fn = cfg, loss_fn
        self.sch = denoiser.schedule
        self.base = denoiser
        self.den = None if train.cond is not None else self._remat(denoiser)  # unconditional: one denoiser
        self.solver = get_solver(cfg.solver).ending(cfg.final)
        self.train, self.val = train, val
        self.device = train.x_T.device
        self.sample_ndim = train.x_T.ndim - 1
        self.K = init_times.shape[0]
        self.ipe = len(train) // cfg.batch_size
        self.total = (cfg.phase1_epochs + cfg.phase2_epochs) * self.ipe
        self.r = radius(cfg, train.x_T[0].numel(), self.sch.sigma_T)
        k, dev = self.K, self.device
        self.xi = xi_from_times(init_times.to(dev), self.sch, cfg.mode)
        self.xic = torch.zeros_like(self.xi)
        self.x_train = train.x_T.unsqueeze(0).repeat(k, *[1] * train.x_T.ndim)
        self.x_val = val.x_T.unsqueeze(0).repeat(k, *[1] * val.x_T.ndim)
        self.opt = rmsprop_state(self.xi)
        self.lr_xi = torch.full((k,), cfg.lr_xi, dtype=torch.float64, device=dev)
        self.lr_xic = torch.full((k,), cfg.lr_xic / cfg.nfe, dtype=torch.float64, device=dev)
        self.lr_x = torch.full((k,), cfg.lr_x / cfg.nfe, dtype=train.x_T.dtype, device=dev)
        self.best_xi, self.best_xic = self.xi.clone(), self.xic.clone()
        self.best_x_val = self.x_val.clone()  # the validation x'_T the best soft loss was measured on
        self.best = [math.inf] * k
        self.best_losses = [(math.inf, math.inf)] * k
        self.last_improve = [0] * k
        self.bad = torch.zeros(k, dtype=torch.bool, device=dev)
        self.loss_sum = torch.zeros(k, dtype=torch.float64, device=dev)
        self.loss_n = 0
        self.iteration = 0
        self.restores = 0
        self.history: list[dict[str, Any]] = []
        self.t_val = 0.0
        self.idx = torch.zeros(cfg.batch_size, dtype=torch.long, device=dev)  # the iteration's training pairs
        self._perm: tuple[int, Tensor | None] = (-1, None)  # (epoch, its permutation on the device)
        # Phase 1 and phase 2 iterations, full and selection-only validations: each its own graph.
        self._pool: Any = None
        self.iterations = {p: self._replayable(lambda p=p: self._iterate(p), graphs) for p in (False, True)}
        self.validations = {f: self._replayable(lambda f=f: self._validation_losses(f), graphs) for f in (False, True)}

    def _replayable(self, fn: Callable[[], Any], graphs: bool) -> Callable[[], Any]:
        if not graphs:
            return fn
        if self.device.type == "cuda" and self._pool is None:
            self._pool = torch.cuda.graph_pool_handle()  # one pool for the run's graphs (ld3core.graphs)
        return Replay(fn, self.fixed_tensors, self.device, pool=self._pool)

    def graph_report(self) -> dict[str, Any]:
        """With graphs: how many steps were captured (CUDA graphs; make_fx records off a GPU) and why any capture failed."""
        steps = [s for s in (*self.iterations.values(), *self.validations.values()) if isinstance(s, Replay)]
        if not steps:
            return {}
        return {"captured": sum(s.captured for s in steps), "failed": [s.failed for s in steps if s.failed]}

    def fixed_tensors(self) -> list[Tensor]:
        """The tensors an iteration or a validation reads or writes: they must stay in place."""
        pairs = [p for ps in (self.train, self.val) for p in (ps.x_T, ps.x_0, ps.cond) if p is not None]
        return [getattr(self, n) for n in STATE_TENSORS] + list(self.opt.values()) + [self.bad, self.loss_sum, self.idx] + pairs

    # Times of every start.
    def times(self, xi: Tensor, xic: Tensor) -> tuple[Tensor, Tensor]:
        t = times_from_xi(xi, self.sch, self.cfg.mode)
        if CONSUMERS[self.cfg.target].integer_timesteps:
            t = snap_timesteps(t, self.sch)  # what the target runs; straight-through gradients
        tc = model_times(t, xic, self.sch, self.cfg.mode) if self.cfg.decoupled else t
        return t, tc

    def _remat(self, den: Denoiser) -> Denoiser:
        return Rematerialized(den) if self.cfg.remat else den

    def solve(self, x: Tensor, t: Tensor, tc: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """x (K, n, *shape), t/tc (K, N+1), cond (n, ...) or None -> outputs (K, n, *shape), per-sample
        times, and (K, n) where the grid was valid (the checks stay on the device)."""
        k, n = x.shape[:2]
        ts, tcs = t.repeat_interleave(n, 0).T, tc.repeat_interleave(n, 0).T
        # Row j of x.flatten(0, 1) is sample j % n of start j // n: conditions repeat per start.
        den = self.den if cond is None else self._remat(conditioned(self.base, cond.repeat(k, *[1] * (cond.ndim - 1))))
        # Only a target's integer timesteps can repeat a time; elsewhere a collapsed step is invalid (a NaN loss).
        checks = DeviceChecks(to_zero=self.cfg.final == "zero", zero_steps=CONSUMERS[self.cfg.target].integer_timesteps)
        out = self.solver(den, x.flatten(0, 1), ts, tcs, on_device=checks).view(x.shape)
        assert checks.valid is not None
        return out, checks.valid.view(k, n)

    def losses(self, out: Tensor, valid: Tensor, target: Tensor) -> Tensor:
        """(K, n, *shape) outputs, where their grid was valid (K, n), vs (n, *shape) -> per-sample
        losses (K, n); NaN where the grid was not valid, so that the non-finite guard takes it."""
        k, n = out.shape[:2]
        per = self.loss_fn(out.flatten(0, 1), target.repeat(k, *[1] * (target.ndim - 1))).view(k, n)
        return torch.where(valid, per, torch.nan)

    # One iteration (Algorithm 1, lines 3-7).
    def step(self, idx: Tensor) -> None:
        """One iteration on the training pairs ``idx`` (batch_size indices, any device)."""
        phase2 = self.iteration >= self.cfg.phase1_epochs * self.ipe
        self.idx.copy_(idx)
        self.iterations[phase2]()  # eager, or the replay of its graph
        self.loss_n += 1
        self.iteration += 1

    def _iterate(self, phase2: bool) -> None:
        """The device work of one iteration on the pairs ``self.idx``: no host read, state in place."""
        cfg, idx = self.cfg, self.idx
        xi = self.xi.detach().requires_grad_(True)
        xic = self.xic.detach().requires_grad_(phase2 and cfg.decoupled)
        xp = self.x_train[:, idx].detach().requires_grad_(cfg.soft)
        t, tc = self.times(xi, xic)
        cond = None if self.train.cond is None else self.train.cond[idx]
        per = self.losses(*self.solve(xp, t, tc, cond), self.train.x_0[idx])  # (K, batch)
        loss = per.mean(1)  # (K,)
        loss.sum().backward()  # starts are independent: each row gets its own gradient
        grads = [g for g in (xi.grad, xic.grad, xp.grad) if g is not None]
        ok = finite_rows(loss[:, None], *grads)
        self.bad |= ~ok
        self.loss_sum += torch.where(ok, loss.detach().to(torch.float64), 0.0)
        # Step times: RMSprop on xi, clipped (App. B.1.1).
        self.xi.copy_(rmsprop_step(self.xi, clip_rows(xi.grad, cfg.clip), self.opt, self.lr_xi, ok, momentum=cfg.momentum))
        # Decoupled times: SGD on xi^c in phase 2, projected into the no-crossing bound.
        if xic.grad is not None:
            xic_new = sgd_step(self.xic, clip_rows(xic.grad, cfg.clip), self.lr_xic, ok)
            self.xic.copy_(project_xic(xic_new, times_from_xi(self.xi, self.sch, cfg.mode), self.sch, cfg.mode))
        # Soft teacher forcing: SGD on x'_T, projected onto the r-ball around x_T.
        if xp.grad is not None:
            moved = project_ball(sgd_step(xp.detach(), xp.grad, self.lr_x, ok), self.train.x_T[idx], self.r, self.sample_ndim)
            if cfg.accept_moves:
                moved = self._accepted(moved, xp.detach(), per.detach(), self.train.x_0[idx], cond)[0]
            self.x_train[:, idx] = moved

    @torch.no_grad()
    def _accepted(self, moved: Tensor, old: Tensor, old_loss: Tensor, target: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        """The authors' acceptance: per start and sample, the moved x'_T where its loss under the
        current parameters is below ``old_loss`` (the loss before the step), else the old one.
        Returns the kept latents and the (K, n) mask of moves kept."""
        t, tc = self.times(self.xi, self.xic)
        new_loss = self._chunked(moved, t, tc, target, cond, grad=False)[0]
        keep = new_loss < old_loss
        return torch.where(keep.reshape(keep.shape + (1,) * self.sample_ndim), moved, old), keep

    def _chunked(
        self, x: Tensor, t: Tensor, tc: Tensor, target: Tensor, cond: Tensor | None, grad: bool
    ) -> tuple[Tensor, Tensor | None]:
        """Per-sample losses (K, n) over a set of pairs in chunks; optionally d/dx.

        Without autograd a chunk holds up to ``val_batch_size`` samples; with it, 4 x
        ``batch_size`` per start, so that this pass never needs much more memory than a
        training iteration.
        """
        k, n = x.shape[:2]
        per_chunk = 4 * self.cfg.batch_size if grad else max(1, self.cfg.val_batch_size // k)
        losses, grads = [], []
        for i in range(0, n, per_chunk):
            xs = x[:, i : i + per_chunk].detach().requires_grad_(grad)
            with torch.set_grad_enabled(grad):
                c = None if cond is None else cond[i : i + per_chunk]
                lo = self.losses(*self.solve(xs, t, tc, c), target[i : i + per_chunk])
                if grad:
                    # Same scale as a training step: mean over a batch of batch_size samples.
                    (lo.sum() / self.cfg.batch_size).backward()
                    grads.append(xs.grad)
            losses.append(lo.detach())
        return torch.cat(losses, 1), (torch.cat(grads, 1) if grad else None)

    def move_val_latents(self) -> None:
        """End of epoch: one projected SGD step on the validation x'_T (xi fixed) (App. B.1)."""
        if not self.cfg.soft:
            return
        t, tc = self.times(self.xi, self.xic)
        lo, g = self._chunked(self.x_val, t.detach(), tc.detach(), self.val.x_0, self.val.cond, grad=True)
        ok = finite_rows(g)
        moved = project_ball(sgd_step(self.x_val, g, self.lr_x, ok), self.val.x_T.unsqueeze(0), self.r, self.sample_ndim)
        if not self.cfg.accept_moves:
            self.x_val.copy_(moved)
            return
        kept, keep = self._accepted(moved, self.x_val, lo, self.val.x_0, self.val.cond)
        self.x_val.copy_(kept)
        # An epoch in which no validation latent moved halves that start's latent step.
        self.lr_x.copy_(torch.where(keep.any(1), self.lr_x, self.lr_x * 0.5))

    def measure_best(self) -> None:
        """Fill in the validation loss that selection did not compute at each start's best state
        (hard from x_T, soft from the validation x'_T of that moment)."""
        if not any(math.isnan(v) for b in self.best_losses for v in b):
            return
        hard, soft = self.validate(True, self.best_xi, self.best_xic, self.best_x_val)
        assert hard is not None and soft is not None
        self.best_losses = [(h if math.isnan(b[0]) else b[0], s if math.isnan(b[1]) else b[1])
                            for b, h, s in zip(self.best_losses, hard, soft)]

    def restore_best_times(self) -> None:
        """Epoch start with ``restore``: every start continues from its best xi and xi^c."""
        self.xi.copy_(self.best_xi)
        self.xic.copy_(self.best_xic)
        self.last_improve = [self.iteration] * self.K

    def validate(self, full: bool = True, xi: Tensor | None = None, xic: Tensor | None = None,
                 x_val: Tensor | None = None) -> tuple[list[float] | None, list[float] | None]:
        """Hard (from x_T) and soft (from the moved x'_T) validation losses per start, in one batched
        pass and one host read; ``full=False`` computes only the selection loss (the other is
        None). ``xi``, ``xic``, ``x_val`` default to the current state (whose pass may be a replay)."""
        if xi is None and xic is None and x_val is None:
            losses = self.validations[full]()
        else:
            losses = self._validation_losses(full, xi, xic, x_val)
        hard, soft = losses.tolist()
        if not self.cfg.soft:
            return hard, hard
        if full:
            return hard, soft
        return (hard, None) if self.cfg.select_on == "hard" else (None, soft)

    @torch.no_grad()
    def _validation_losses(self, full: bool, xi: Tensor | None = None, xic: Tensor | None = None,
                           x_val: Tensor | None = None) -> Tensor:
        """(2, K) mean hard and soft validation losses on the device (a row not computed is NaN;
        without soft teacher forcing only the hard one is, in both rows)."""
        xi, xic = (self.xi if xi is None else xi), (self.xic if xic is None else xic)
        x_val = self.x_val if x_val is None else x_val
        t, tc = self.times(xi, xic)
        x_hard = self.val.x_T.unsqueeze(0).expand(self.K, *self.val.x_T.shape)
        if not self.cfg.soft:
            return self._chunked(x_hard, t, tc, self.val.x_0, self.val.cond, grad=False)[0].mean(1).expand(2, self.K)
        if not full:
            hard = self.cfg.select_on == "hard"
            one = self._chunked(x_hard if hard else x_val, t, tc, self.val.x_0, self.val.cond, grad=False)[0].mean(1)
            none = torch.full_like(one, torch.nan)
            return torch.stack([one, none] if hard else [none, one])
        cond = None if self.val.cond is None else torch.cat([self.val.cond, self.val.cond])
        both = self._chunked(torch.cat([x_hard, x_val], 1), t, tc, self.val.x_0.repeat(2, *[1] * (self.val.x_0.ndim - 1)),
                             cond, grad=False)[0]
        n = len(self.val)
        return torch.stack([both[:, :n].mean(1), both[:, n:].mean(1)])

    def after_validation(self, hard: list[float] | None, soft: list[float] | None) -> None:
        """Best checkpoint, reduce-on-plateau (with ``restore``: back to the best state first),
        non-finite recovery; one history row. ``hard`` or ``soft`` may be None (not computed)."""
        cfg = self.cfg
        bad = self.bad.tolist()
        metric = hard if cfg.select_on == "hard" or not cfg.soft else soft
        assert metric is not None
        for k in range(self.K):
            if bad[k] or not math.isfinite(metric[k]):
                # Restore the best state with fresh optimizer state (a NaN poisons RMSprop).
                self.xi[k], self.xic[k] = self.best_xi[k], self.best_xic[k]
                for v in self.opt.values():
                    v[k] = 0
                self.restores += 1
                continue
            if metric[k] < self.best[k]:
                self.best[k] = metric[k]
                self.best_losses[k] = (hard[k] if hard else math.nan, soft[k] if soft else math.nan)
                self.best_xi[k], self.best_xic[k] = self.xi[k].clone(), self.xic[k].clone()
                self.best_x_val[k] = self.x_val[k].clone()
                self.last_improve[k] = self.iteration
            elif self.iteration - self.last_improve[k] >= cfg.patience:
                if cfg.restore:  # the authors' sawtooth: back to the best state, then a smaller step
                    self.xi[k], self.xic[k] = self.best_xi[k], self.best_xic[k]
                    self.x_val[k] = self.best_x_val[k]
                # Decay towards the floor, never up to it (as torch's ReduceLROnPlateau).
                self.lr_xi[k] = min(float(self.lr_xi[k]), max(float(self.lr_xi[k]) * cfg.factor, cfg.min_lr_xi))
                self.lr_xic[k] = min(float(self.lr_xic[k]), max(float(self.lr_xic[k]) * cfg.factor, cfg.min_lr_xic))
                self.last_improve[k] = self.iteration
        self.bad.zero_()
        train_loss = (self.loss_sum / max(self.loss_n, 1)).tolist() if self.loss_n else [None] * self.K
        self.loss_sum.zero_()
        self.loss_n = 0
        self.history.append({
            "iteration": self.iteration, "epoch": self.iteration / self.ipe,
            "train_loss": train_loss, "val_hard": hard, "val_soft": soft,
            "lr_xi": self.lr_xi.tolist(), "best": list(self.best),
        })

    def state(self) -> dict[str, Any]:
        """Everything needed to resume bit-for-bit (CPU tensors and plain values)."""
        st: dict[str, Any] = {n: getattr(self, n).detach().cpu().clone() for n in STATE_TENSORS}
        st["opt"] = {n: v.cpu().clone() for n, v in self.opt.items()}
        st["accum"] = {"bad": self.bad.cpu().clone(), "loss_sum": self.loss_sum.cpu().clone(), "loss_n": self.loss_n}
        st.update(
            iteration=self.iteration, best=list(self.best), best_losses=[list(b) for b in self.best_losses],
            last_improve=list(self.last_improve), restores=self.restores, history=list(self.history),
            config=self.cfg.to_dict(),
        )
        return st

    def load(self, st: dict[str, Any]) -> None:
        if {"final": "sigma_min", **st["config"]} != self.cfg.to_dict():  # states from before ``final``: sigma_min
            raise ValueError("resume state was made with a different LD3 configuration")
        for n in STATE_TENSORS:
            if st[n].shape != getattr(self, n).shape:
                raise ValueError(f"resume state: {n} has shape {tuple(st[n].shape)}, expected {tuple(getattr(self, n).shape)}")
            getattr(self, n).copy_(st[n])
        for n, v in st["opt"].items():
            self.opt[n].copy_(v)
        self.bad.copy_(st["accum"]["bad"])
        self.loss_sum.copy_(st["accum"]["loss_sum"])
        self.loss_n = st["accum"]["loss_n"]
        self.iteration, self.best = st["iteration"], list(st["best"])
        self.best_losses = [tuple(b) for b in st["best_losses"]]
        self.last_improve, self.restores = list(st["last_improve"]), st["restores"]
        self.history = list(st["history"])

    def batch_indices(self, iteration: int) -> Tensor:
        """Epoch-seeded permutation: the data order depends only on (seed, epoch). It is made on the
        host and copied to the device once per epoch (a copy from host memory waits for the device)."""
        epoch, pos = divmod(iteration, self.ipe)
        if self._perm[0] != epoch:
            g = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + epoch)
            self._perm = (epoch, torch.randperm(len(self.train), generator=g).to(self.device))
        return self._perm[1][pos * self.cfg.batch_size : (pos + 1) * self.cfg.batch_size]


def validation_passes(cfg: LD3Config, per_epoch: int) -> tuple[int, int]:
    """(full, single): the validation passes ``train`` makes over a whole run, ``full`` ones
    computing the hard and the soft loss, ``single`` ones only the selection loss."""
    total = (cfg.phase1_epochs + cfg.phase2_epochs) * per_epoch
    full, single = 1, 0  # the starts themselves
    for i in range(1, total + 1):
        epoch_end, last = i % per_epoch == 0, i == total
        if cfg.restore and epoch_end and not last:
            full, single = full + 1, single + 1
        elif epoch_end or last:
            full += 1
        elif i % cfg.val_every == 0:
            single += 1
    return full, single


def _monotone_finite(t: Tensor) -> bool:
    return bool(torch.isfinite(t).all()) and bool((t[1:] < t[:-1]).all())


def train(
    denoiser: Denoiser | ConditionalDenoiser,
    train_pairs: Pairs,
    val_pairs: Pairs,
    init_times: Tensor,
    cfg: LD3Config,
    loss_fn: LossFn,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    on_checkpoint: Callable[[dict[str, Any]], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    resume: dict[str, Any] | None = None,
    progress_every: int = 5,
    graphs: bool = False,
) -> TrainResult:
    """Learn step times from ``init_times`` (K, N+1): one row per start, trained side by side.

    A conditional ``denoiser`` needs pairs with per-sample conditions (``Pairs.cond``).
    ``graphs``: after two eager calls each, replay the iterations and validations as CUDA graphs
    on a CUDA device; off a GPU as ``make_fx`` records, replayed the same way (``ld3core.graphs``:
    what the CPU tests of the capture run).
    """
    if init_times.ndim != 2 or init_times.shape[1] != cfg.n_steps + 1:
        raise ValueError(f"init_times must be (K, {cfg.n_steps + 1}) for {cfg.solver} at NFE {cfg.nfe}")
    if len(train_pairs) < cfg.batch_size:
        raise ValueError(f"need at least batch_size={cfg.batch_size} training pairs, got {len(train_pairs)}")
    if (train_pairs.cond is None) != (val_pairs.cond is None):
        raise ValueError("training and validation pairs must both carry conditions or both none")
    if (train_pairs.cond is not None) != is_conditional(denoiser):
        raise ValueError("a conditional denoiser needs pairs with conditions, an unconditional one pairs without")
    run = _Run(denoiser, train_pairs, val_pairs, init_times, cfg, loss_fn, graphs)
    t0 = time.perf_counter()
    stopped = False

    def validate_and_report(full: bool, checkpoint: bool = True) -> None:
        if run.device.type == "cuda":
            torch.cuda.synchronize(run.device)  # queued training work belongs to training time
        tv = time.perf_counter()
        hard, soft = run.validate(full)
        run.after_validation(hard, soft)
        run.t_val += time.perf_counter() - tv
        if checkpoint:  # else a second validation at this iteration follows: it alone is reported
            if on_checkpoint:
                on_checkpoint(run.state())
            report(hard, soft)

    def report(hard: list[float] | None = None, soft: list[float] | None = None) -> None:
        if not on_progress:
            return
        k = min(range(run.K), key=lambda j: run.best[j])
        el = time.perf_counter() - t0
        done = run.iteration - (resume["iteration"] if resume else 0)
        eta = el / done * (run.total - run.iteration) if done else None
        validated = hard is not None or soft is not None
        loss = run.history[-1]["train_loss"][k] if run.history and validated else None
        metric = hard if cfg.select_on == "hard" or not cfg.soft else soft
        on_progress(Progress("training", run.iteration, run.total, loss, hard[k] if hard else None,
                             soft[k] if soft else None, run.best[k], el, eta, metric[k] if metric else None))

    if resume is not None:
        run.load(resume)
    else:
        validate_and_report(full=True)  # the starts themselves are the first candidates
    while run.iteration < run.total:
        if should_stop and should_stop():
            stopped = True
            if on_checkpoint:
                on_checkpoint(run.state())
            break
        run.step(run.batch_indices(run.iteration))
        epoch_end, last = run.iteration % run.ipe == 0, run.iteration == run.total
        due = epoch_end or last or run.iteration % cfg.val_every == 0
        if cfg.restore and epoch_end and not last:
            # The epoch's last parameters are candidates too; then the validation x'_T move, every
            # start goes back to its best times and is measured on the moved latents (one checkpoint,
            # after all of it, so that a resume never lands half-way).
            validate_and_report(full=False, checkpoint=False)
            run.move_val_latents()
            run.restore_best_times()
            validate_and_report(full=True)
        elif due:
            if epoch_end:
                run.move_val_latents()
            validate_and_report(full=epoch_end or last)
        elif run.iteration % progress_every == 0:
            report()
    if not stopped:
        run.measure_best()  # both validation losses of every start's best state, for the record

    k = min(range(run.K), key=lambda j: run.best[j])
    starts = []
    for j in range(run.K):
        t, tc = run.times(run.best_xi[j : j + 1], run.best_xic[j : j + 1])
        starts.append({"val_hard": run.best_losses[j][0], "val_soft": run.best_losses[j][1],
                       "t_steps": t[0].detach().cpu(), "t_model": tc[0].detach().cpu()})
    t_best, tc_best = starts[k]["t_steps"], starts[k]["t_model"]
    if not (_monotone_finite(t_best) and _monotone_finite(tc_best)):
        raise FloatingPointError("LD3 produced a non-finite or non-monotone schedule; refusing to return it")
    return TrainResult(
        t_steps=t_best, t_model=tc_best, start=k, val_hard=run.best_losses[k][0], val_soft=run.best_losses[k][1],
        starts=starts, history=run.history, iterations=run.iteration, stopped=stopped, restores=run.restores,
        timings={"training_s": time.perf_counter() - t0 - run.t_val, "validation_s": run.t_val}, graphs=run.graph_report(),
    )
