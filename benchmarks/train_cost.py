"""What an LD3 job costs on a CIFAR-10-size pixel model: wall time, peak memory, network alone.

Run by hand, never by CI (nothing here asserts a timing). The model is a randomly initialised
diffusers ``UNet2DModel`` with the DDPM CIFAR-10 layout (32 px, 3 channels, channels
128/256/256/256, 2 res-blocks per level, attention at 16x16: 35.7M parameters), frozen and in
eval mode, as an eps-model under DDPM's linear betas. Random weights cost what trained ones do.
``--small`` swaps in a 0.7M-parameter UNet of the same kind so that the whole script finishes
in a minute or two on a CPU (the full-size defaults took ~11 min on 1 core of a shared box).

Prints three markdown tables (``--json OUT`` also saves the numbers):
1. Job wall time: ``run_job``'s own ``timings`` (teacher pairs, heuristic scoring, training,
   validation, held-out evaluation), each in total and per unit (pair, iteration, validation).
2. Peak memory and time of exactly one training iteration (batch 2, forward through the
   solver, backward to xi, xi^c and x'_T) at each ``--nfe``, with and without
   rematerialization, and the ratio largest NFE / smallest NFE (target with remat: <= 1.3).
   The second iteration of a short run is measured (the first backward of a process
   allocates one-time caches: on CPU 10-25 MiB more, growing with NFE). Memory is measured
   in a fresh subprocess per configuration. CUDA: ``torch.cuda.max_memory_allocated`` after
   ``reset_peak_memory_stats``, minus ``memory_allocated`` before the iteration. CPU (Linux,
   glibc): the rise of the process's peak RSS (``VmHWM``, reset through
   ``/proc/self/clear_refs`` right before the iteration) over its RSS at that moment, with
   ``MALLOC_MMAP_THRESHOLD_=16384`` so that every buffer of 16 KiB or more (a 2x3x32x32
   float32 state is 24 KiB) is its own mapping, unmapped when freed: RSS then follows live
   tensors instead of malloc's cache (with glibc's default the same iteration reads higher,
   erratically). Smaller objects (autograd nodes, Python objects: ~2.5 MiB at NFE 20) are
   not resolved. That setting slows CPU iterations ~1.7x (page faults), so the time is
   taken separately, in this process with the default allocator.
3. The network alone at the same device: forward at batch 2, forward + backward to the input
   at batch 2, forward at batch 32 and 64 without autograd. An iteration ideally costs
   NFE x (forward + forward + backward) with rematerialization, NFE x (forward + backward)
   without; table 2 sets the measured iteration next to that estimate.

Commands (from the repository root; on a busy CPU box ``--threads 1`` avoids oversubscribed
OpenMP threads, which made batch-2 calls 3-7x slower on a shared 2-core machine):
    .venv/bin/python benchmarks/train_cost.py --small --threads 1                        # quick check
    .venv/bin/python benchmarks/train_cost.py --threads 1 --json cost_cpu.json           # CIFAR-10 size
    .venv/bin/python benchmarks/train_cost.py --device cuda --n-train 10 --n-val 10 --n-test 10 \
        --phase1-epochs 2 --phase2-epochs 5 --json cost_cuda.json     # a GPU, more iterations
    .venv/bin/python benchmarks/train_cost.py --only memory --nfe 4 10 20 40
    .venv/bin/python benchmarks/train_cost.py --device cuda --only job --default-job --job-nfe 7 \
        --loss lpips [--compile]   # the full default job at NFE 7 (issue 2's GPU target)
Options: ``--loss lpips`` (LPIPS-VGG instead of l2; ``lpips_alex`` AlexNet), ``--job-nfe``, ``--teacher-nfe``,
``--starts``, ``--solver``, ``--repeats``, ``--threads``, ``--only job|memory|network``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from typing import Any, Callable

import torch
from diffusers import UNet2DModel

from ld3core.accel import compile_denoiser
from ld3core.config import LD3Config
from ld3core.denoisers import NetworkDenoiser
from ld3core.graphs import Replay
from ld3core.heuristics import heuristic
from ld3core.losses import make_loss
from ld3core.optimize import JobConfig, run_job
from ld3core.schedules import VPDiscrete
from ld3core.solvers import get_solver
from ld3core.teacher import Pairs, TeacherSpec, prior_noise
from ld3core.train import train, validation_passes

SHAPE = (3, 32, 32)
MiB = 2**20


# The model.
def make_unet(small: bool) -> UNet2DModel:
    """DDPM's CIFAR-10 UNet (google/ddpm-cifar10-32 layout), or a small one of the same kind."""
    torch.manual_seed(0)  # the weights do not change the cost; fixed only to make runs repeatable
    common = dict(sample_size=32, in_channels=3, out_channels=3, attention_head_dim=None, downsample_padding=0,
                  flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6, dropout=0.1)
    if small:
        unet = UNet2DModel(block_out_channels=(32, 64), layers_per_block=1,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D"), **common)
    else:
        unet = UNet2DModel(block_out_channels=(128, 256, 256, 256), layers_per_block=2,
                           down_block_types=("DownBlock2D", "AttnDownBlock2D", "DownBlock2D", "DownBlock2D"),
                           up_block_types=("UpBlock2D", "UpBlock2D", "AttnUpBlock2D", "UpBlock2D"), **common)
    return unet.eval().requires_grad_(False)


def make_denoiser(unet: UNet2DModel) -> NetworkDenoiser:
    return NetworkDenoiser(lambda x, tm: unet(x, tm).sample, VPDiscrete.linear(), "eps")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


# 1. A whole job, timed by run_job itself.
def job_cost(den: NetworkDenoiser, args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    if args.default_job:  # everything but solver, NFE and loss as a job gets it by default
        base = JobConfig()
        cfg = JobConfig(ld3=LD3Config(solver=args.solver, nfe=args.job_nfe, loss=args.loss),
                        n_train=base.n_train, n_val=base.n_val, n_test=base.n_test, starts=base.starts)
    else:
        ld3 = LD3Config(solver=args.solver, nfe=args.job_nfe, loss=args.loss,
                        phase1_epochs=args.phase1_epochs, phase2_epochs=args.phase2_epochs)
        cfg = JobConfig(ld3=ld3, teacher=TeacherSpec(nfe=args.teacher_nfe), n_train=args.n_train, n_val=args.n_val,
                        n_test=args.n_test, starts=args.starts)
    loss_fn = make_loss(args.loss, device=device)
    # run_job synchronises at its phase boundaries; training and validation are split inside
    # train(), whose validation ends in a host read, so each phase's clock holds its own work.
    t0 = time.perf_counter()
    res = run_job(den, SHAPE, cfg, loss_fn, device=device, graphs=args.graphs)
    total = time.perf_counter() - t0
    full, single = validation_passes(cfg.ld3, cfg.n_train // cfg.ld3.batch_size)
    return {"config": cfg.to_dict(), "timings": res.timings, "total_s": total, "iterations": res.train.iterations,
            "validations": len(res.train.history), "validation_passes": [full, single],
            "pairs": cfg.n_train + cfg.n_val + cfg.n_test, "graphs": args.graphs,
            "schedules_scored": len(cfg.heuristics), "schedules_tested": len(cfg.heuristics) + 1,
            "learned": {"t_steps": res.learned_t_steps.tolist(), "t_model": res.learned_t_model.tolist()},
            "test": res.test, "source": res.source, "device": str(device), "captured": res.train.graphs}


def job_section(r: dict[str, Any], floor: dict[str, float] | None = None) -> str:
    t, c = r["timings"], r["config"]
    rows = [
        ("teacher pairs", t["teacher_s"], r["pairs"], f"pair ({c['teacher']['solver']}, NFE {c['teacher']['nfe']})"),
        ("heuristic scoring", t["init_s"], r["schedules_scored"], f"heuristic on {c['n_val']} val pairs"),
        ("training", t["training_s"], r["iterations"], "iteration"),
        ("validation", t["validation_s"], r["validations"], "validation (hard + soft)"),
        ("held-out evaluation", t["evaluation_s"], r["schedules_tested"], f"schedule on {c['n_test']} test pairs"),
    ]
    floors = {name: (floor or {}).get(key) for name, key in (("teacher pairs", "teacher_s"), ("heuristic scoring", "init_s"),
              ("training", "training_s"), ("validation", "validation_s"), ("held-out evaluation", "evaluation_s"))}
    out = []
    for name, s, n, unit in rows:
        f = floors.get(name)
        out.append((name, f"{s:.2f}", str(n), f"{s / n:.3f}", unit, "" if f is None else f"{f:.2f}",
                    "" if f is None else f"{s / f:.2f}"))
    out.append(("other", f"{r['total_s'] - sum(t.values()):.2f}", "", "", "", "", ""))
    out.append(("**total**", f"**{r['total_s']:.2f}**", "", "", "", "", ""))
    mode = ("eager" if not r.get("graphs") else "iterations and validations replayed as CUDA graphs"
            if r.get("device", "cuda").startswith("cuda") else "graphs=True: on a CPU, replayed make_fx records")
    return (f"## 1. Job wall time ({mode}): NFE {c['ld3']['nfe']}, {c['n_train']}/{c['n_val']}/{c['n_test']} "
            f"train/val/test pairs, {r['iterations']} iterations, {c['starts']} start(s)\n\n"
            + md(["phase", "total s", "count", "s per unit", "unit", "floor s", "ratio"], out)
            + "\n\nFrom run_job's own timings. Training includes the epoch-end step on the validation x'_T (one "
            "solve with backward over the validation pairs per epoch); 'other' is the rest of run_job. "
            + (floor_note(floor) if floor else "") + "\n")


# 1b. The job's floor: its network calls alone, each replayed as a CUDA graph at the job's batch sizes.
def job_floor(unet: UNet2DModel, job: dict[str, Any], device: torch.device, repeats: int) -> dict[str, Any]:
    """What each phase would cost if it were only its network calls, each call a replayed CUDA
    graph (eager on a CPU) at the batch the job runs it at: per iteration, calls x (forward +
    forward/backward) with rematerialization (calls x forward/backward without) at starts x
    batch_size; per epoch end, the same over the validation x'_T in chunks of 4 x batch_size per
    start; per validation pass, calls x forward over the chunks of ``val_batch_size`` (both the
    hard and the soft half in a full pass); the teacher, the heuristics' scoring and the held-out
    test, calls x forward in batches of the job's ``batch_size`` (the test's consumer forms and
    guard statistics not counted). The loss is not included."""
    c, ld3 = job["config"], job["config"]["ld3"]
    k = c["starts"] if c["init"] == "best" else 1
    calls = get_solver(ld3["solver"]).nfe(LD3Config.from_dict(ld3).n_steps)
    per_start = max(1, ld3["val_batch_size"] // k)

    def chunks(n: int, size: int) -> list[int]:
        return [min(size, n - i) for i in range(0, n, size)]

    fwd: dict[int, float] = {}
    fwd_bwd: dict[int, float] = {}

    def cost(table: dict[int, float], b: int, backward: bool) -> float:
        if b not in table:
            table[b] = network_call(unet, device, b, backward, repeats)
        return table[b]

    def with_grad(b: int) -> float:
        return cost(fwd_bwd, b, True) + (cost(fwd, b, False) if ld3["remat"] else 0.0)

    iteration = calls * with_grad(k * ld3["batch_size"])
    epochs = ld3["phase1_epochs"] + ld3["phase2_epochs"]
    val_move = sum(calls * with_grad(k * n) for n in chunks(c["n_val"], 4 * ld3["batch_size"])) if ld3["soft"] else 0.0
    full, single = job["validation_passes"]
    one = sum(calls * cost(fwd, k * n, False) for n in chunks(c["n_val"], per_start))
    both = sum(calls * cost(fwd, k * n, False) for n in chunks(2 * c["n_val"] if ld3["soft"] else c["n_val"], per_start))
    # Teacher, scoring and test: solves without autograd in batches of the job's batch_size.
    teacher = c["teacher"]
    teacher_calls = get_solver(teacher["solver"]).nfe(get_solver(teacher["solver"]).steps_for_nfe(teacher["nfe"]))

    def solves(n: int, per_call: int) -> float:
        return sum(per_call * cost(fwd, b, False) for b in chunks(n, c["batch_size"]))

    return {"iteration_s": iteration, "training_s": job["iterations"] * iteration + epochs * val_move,
            "validation_s": full * both + single * one,
            "teacher_s": sum(solves(c[f"n_{s}"], teacher_calls) for s in ("train", "val", "test")),
            "init_s": job["schedules_scored"] * solves(c["n_val"], calls),
            "evaluation_s": job["schedules_tested"] * solves(c["n_test"], calls),
            "calls_per_solve": calls, "starts": k, "forward_s": fwd, "forward_backward_s": fwd_bwd,
            "cuda_graphs": device.type == "cuda"}


def network_call(unet: UNet2DModel, device: torch.device, batch: int, backward: bool, repeats: int) -> float:
    """Median time of one network call at ``batch`` (forward, or forward + backward to the input),
    replayed as a CUDA graph on a CUDA device, eager elsewhere."""
    x = torch.randn(batch, *SHAPE, device=device, requires_grad=backward)
    t = torch.full((batch,), 500.0, device=device)

    def call() -> None:
        if backward:
            (g,) = torch.autograd.grad(unet(x, t).sample.sum(), x)
        else:
            with torch.no_grad():
                unet(x, t)

    if device.type != "cuda":
        return timed(call, device, repeats)
    graphed = Replay(call, lambda: [x, t], device)  # the loop's own capture: two warm-up calls, then a graph
    for _ in range(graphed.warmup):
        graphed()
    return timed(graphed, device, repeats)  # its first call captures; the timed ones replay


def floor_note(floor: dict[str, Any]) -> str:
    how = "replayed as CUDA graphs" if floor["cuda_graphs"] else "eager (no CUDA graphs on this device)"
    return (f"Floor: the phase's network calls alone ({floor['calls_per_solve']} per solve, {floor['starts']} start(s) "
            f"per call), each {how} at the job's batch sizes, loss excluded (`job_floor`); ratio = measured / floor, "
            f"the figure to drive towards 1. One iteration's floor: {floor['iteration_s'] * 1e3:.1f} ms.")


# 2. Peak memory of one training iteration (each configuration in its own process).
class IterationProbe:
    """``should_stop`` for train(), which polls it right before every iteration: it lets the
    first ``warm`` iterations run (the first backward of a process allocates caches once; with
    graphs, two eager warm-up iterations precede the capture), measures the next one (wall
    time, and peak memory if asked), then stops training. With graphs the measured iteration is
    the capture and first replay, whose peak is the graph's working memory; its wall time is
    taken from the replay after it (``time_after``)."""

    def __init__(self, device: torch.device, memory: bool, warm: int = 1, time_after: int = 0) -> None:
        self.device, self.memory, self.calls, self.result = device, memory, 0, {}
        self.warm, self.time_after = warm, time_after

    def __call__(self) -> bool:
        sync(self.device)
        self.calls += 1
        measured = self.warm + 1
        if self.calls == measured:
            self.base = reset_peak(self.device) if self.memory else 0.0
        elif self.calls == measured + 1 and self.memory:
            self.result.update(read_peak(self.device, self.base))
        if self.calls == measured + self.time_after:
            self.t0 = time.perf_counter()
        elif self.calls == measured + self.time_after + 1:
            self.result["iteration_s"] = time.perf_counter() - self.t0
            return True
        return False


def reset_peak(device: torch.device) -> float:
    """Reset the peak counter; return the memory in use now (bytes)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    return proc_status("VmRSS")


def read_peak(device: torch.device, base: float) -> dict[str, float]:
    peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else proc_status("VmHWM")
    return {"peak_increase_mib": (peak - base) / MiB, "peak_mib": peak / MiB}


def proc_status(key: str) -> float:
    with open("/proc/self/status") as f:
        return float(re.search(rf"^{key}:\s+(\d+) kB", f.read(), re.M).group(1)) * 1024


def one_iteration(den: NetworkDenoiser, args: argparse.Namespace, device: torch.device, nfe: int, remat: bool,
                  memory: bool) -> dict[str, float]:
    """Phase-2 iterations through the public train(), at batch 2, in one epoch long enough that
    neither an epoch end nor a validation comes before the measured one."""
    cfg = LD3Config(solver=args.solver, nfe=nfe, loss=args.loss, remat=remat, phase1_epochs=0, phase2_epochs=1,
                    val_every=10**9)
    warm, time_after = (3, 1) if args.graphs else (1, 0)
    n_train = 2 * (warm + time_after + 3)
    x = prior_noise(range(n_train + 2), SHAPE, den.schedule.sigma_T, device=device)
    target = torch.zeros_like(x)  # the teacher's outputs do not change the cost
    init = heuristic("logsnr", den.schedule, cfg.n_steps)[None].to(device)
    probe = IterationProbe(device, memory, warm, time_after)
    train(den, Pairs(x[:n_train], target[:n_train]), Pairs(x[n_train:], target[n_train:]), init, cfg,
          make_loss(args.loss, device=device), should_stop=probe, graphs=args.graphs)
    return probe.result


def memory_cost(den: NetworkDenoiser, args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    """Peak memory from a fresh process per configuration; wall time from this one."""
    rows = []
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "16384"} if device.type == "cpu" else None
    for remat in (True, False):
        for nfe in args.nfe:
            cmd = [sys.executable, os.path.abspath(__file__), *sys.argv[1:], "--child", json.dumps([nfe, remat])]
            out = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"memory run NFE {nfe} remat={remat} failed:\n{out.stderr}")
            peak = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append({"nfe": nfe, "remat": remat, "peak_increase_mib": peak["peak_increase_mib"],
                         "peak_mib": peak["peak_mib"], **one_iteration(den, args, device, nfe, remat, memory=False)})
    return rows


def memory_section(rows: list[dict[str, Any]], net: dict[str, float], device: torch.device) -> str:
    out = []
    for r in rows:
        est = ideal_iteration(net, r["nfe"], r["remat"])
        out.append((str(r["nfe"]), "yes" if r["remat"] else "no", f"{r['peak_increase_mib']:.1f}",
                    f"{r['peak_mib']:.0f}", f"{r['iteration_s']:.3f}", f"{est:.3f}", f"{r['iteration_s'] / est:.2f}"))
    if device.type == "cuda":
        absolute = "allocator peak"
        method = "torch.cuda.max_memory_allocated after reset_peak_memory_stats, minus memory_allocated before"
    else:
        absolute = "process peak RSS"
        method = ("peak RSS (VmHWM, reset via /proc/self/clear_refs) minus RSS just before the iteration, fresh "
                  "process per row, MALLOC_MMAP_THRESHOLD_=16384 so that freed tensors leave the RSS")
    headers = ["NFE", "remat", "peak increase MiB", f"{absolute} MiB", "iteration s", "network-only s", "ratio"]
    return ("## 2. One training iteration (batch 2, backward to xi, xi^c and x'_T)\n\n" + md(headers, out)
            + f"\n\nPeak increase: {method}. Iteration s: the same (second) iteration, timed in the main process "
            "(default allocator). Network-only: NFE x (forward + forward/backward) with remat, NFE x "
            "forward/backward without, from table 3 (the loss is not included); ratio = iteration / that.\n\n"
            + memory_ratios(rows) + "\n")


def memory_ratios(rows: list[dict[str, Any]]) -> str:
    lo, hi = min(r["nfe"] for r in rows), max(r["nfe"] for r in rows)
    lines = []
    for remat in (True, False):
        peak = {r["nfe"]: r["peak_increase_mib"] for r in rows if r["remat"] == remat}
        ratio = peak[hi] / peak[lo]
        target = f" (target <= 1.3: {'met' if ratio <= 1.3 else 'NOT met'})" if remat else ""
        lines.append(f"- remat {'on' if remat else 'off'}: peak increase NFE {hi} / NFE {lo} = {ratio:.2f}{target}")
    return "\n".join(lines)


def ideal_iteration(net: dict[str, float], nfe: int, remat: bool) -> float:
    """Network time of one iteration: with remat every call runs a forward without a graph and
    is recomputed with one in the backward pass; without, it runs once and is backpropagated."""
    per_call = net["fwd_bwd_b2"] + (net["fwd_b2"] if remat else 0.0)
    return nfe * per_call


# 3. The network alone.
def network_cost(unet: UNet2DModel, device: torch.device, repeats: int) -> dict[str, float]:
    def inputs(b: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(b, *SHAPE, device=device), torch.full((b,), 500.0, device=device)

    def forward(b: int) -> Callable[[], Any]:
        x, t = inputs(b)
        return torch.no_grad()(lambda: unet(x, t).sample)

    def forward_backward() -> None:
        x, t = inputs(2)
        x.requires_grad_(True)
        unet(x, t).sample.sum().backward()

    fns = {"fwd_b2": forward(2), "fwd_bwd_b2": forward_backward, "fwd_b32": forward(32), "fwd_b64": forward(64)}
    return {name: timed(fn, device, repeats) for name, fn in fns.items()}


def timed(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    """Median wall time of ``repeats`` calls after one warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def network_section(r: dict[str, float], device: torch.device, repeats: int) -> str:
    rows = [("forward, batch 2, no autograd", r["fwd_b2"], 2),
            ("forward + backward to the input, batch 2", r["fwd_bwd_b2"], 2),
            ("forward, batch 32, no autograd", r["fwd_b32"], 32),
            ("forward, batch 64, no autograd", r["fwd_b64"], 64)]
    table = md(["call", "s per call", "ms per sample"], [(n, f"{s:.4f}", f"{1e3 * s / b:.2f}") for n, s, b in rows])
    return (f"## 3. The network alone ({device})\n\n{table}\n\nMedian of {repeats} calls after one warm-up; "
            "the backward is taken to the input (weights frozen).\n")


def md(headers: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="default: cuda if any")
    p.add_argument("--small", action="store_true", help="a 0.7M-parameter UNet instead of DDPM's CIFAR-10 one")
    p.add_argument("--nfe", type=int, nargs="+", default=[4, 10, 20], help="NFEs of the memory table")
    p.add_argument("--json", metavar="OUT", help="also save the numbers here")
    p.add_argument("--only", choices=("job", "memory", "network"), nargs="+", default=["job", "memory", "network"])
    p.add_argument("--loss", choices=("l2", "lpips", "lpips_alex"), default="l2")
    p.add_argument("--solver", default="unipc")
    p.add_argument("--job-nfe", type=int, default=10)
    p.add_argument("--teacher-nfe", type=int, default=20)
    p.add_argument("--n-train", type=int, default=2, help="training pairs; iterations = epochs x n_train / 2")
    p.add_argument("--n-val", type=int, default=2)
    p.add_argument("--n-test", type=int, default=2)
    p.add_argument("--phase1-epochs", type=int, default=1)
    p.add_argument("--phase2-epochs", type=int, default=1)
    p.add_argument("--starts", type=int, default=1, help="heuristic starts trained side by side")
    p.add_argument("--default-job", action="store_true",
                   help="table 1 runs the full default job: JobConfig()'s pair counts, epochs and starts "
                        "(overrides --n-*, --phase*-epochs, --starts)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network call (inductor; no CUDA graphs)")
    p.add_argument("--graphs", action="store_true",
                   help="replay training iterations and validations as CUDA graphs (train(graphs=True))")
    p.add_argument("--floor", action="store_true",
                   help="table 1 also gives each phase's floor: its network calls replayed as CUDA graphs")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per network measurement")
    p.add_argument("--threads", type=int, help="CPU intra-op threads (default: torch's); 1 is steadier when shared")
    p.add_argument("--child", help=argparse.SUPPRESS)  # [nfe, remat]: one memory run, JSON on stdout
    return p.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    unet = make_unet(args.small).to(device)
    den = make_denoiser(unet)
    if args.compile:
        den = compile_denoiser(den, device)
    if args.child:
        nfe, remat = json.loads(args.child)
        print(json.dumps(one_iteration(den, args, device, nfe, remat, memory=True)))
        return

    n_params = sum(p.numel() for p in unet.parameters())
    name = "small UNet" if args.small else "DDPM CIFAR-10 UNet"
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} CPU thread(s)"
    print(f"# LD3 training cost: {name} ({n_params / 1e6:.2f}M parameters), {args.solver}, loss {args.loss}, "
          f"{device} ({hw}), torch {torch.__version__}{', torch.compile' if args.compile else ''}"
          f"{', CUDA graphs' if args.graphs else ''}\n")
    results: dict[str, Any] = {"device": str(device), "params": n_params, "args": vars(args)}
    if "network" in args.only or "memory" in args.only:  # table 2 compares against the network alone
        results["network"] = network_cost(unet, device, args.repeats)
    if "job" in args.only:
        results["job"] = job_cost(den, args, device)
        if args.floor:
            results["floor"] = job_floor(unet, results["job"], device, args.repeats)
        print(job_section(results["job"], results.get("floor")))
    if "memory" in args.only:
        results["memory"] = memory_cost(den, args, device)
        print(memory_section(results["memory"], results["network"], device))
    if "network" in args.only:
        print(network_section(results["network"], device, args.repeats))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
