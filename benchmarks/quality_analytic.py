"""LD3 against every heuristic on analytic Gaussian mixtures, where the truth is known.

For each model (``gmm2d``: 9 tight modes on a 2-D grid; ``gmm64``: 8 tight modes in 64-D),
seed, solver and NFE it measures, on held-out noise:
- distance to the teacher: the RMS of Psi(x_T) - Psi_*(x_T) (the job's own L2 objective) on
  2000 fresh noise samples that no training, selection or test-guard step saw;
- distribution quality of those 2000 samples against 2000 exact mixture samples: Frechet distance
  (FD), sliced Wasserstein-2 (SW) and the share of samples off every mode (farther than the
  99.9% radius of the nearest component).
Methods: the four heuristics; LD3 as in the paper (one start, the best heuristic on the
validation pairs, checkpoint picked on the soft validation loss) with soft/hard loss and
with/without decoupled times; and ``ours``: 3 heuristic starts side by side, checkpoint on
the hard validation loss, and the held-out test guard (the learned schedule is returned only
if it beats the best heuristic on the test pairs, else that heuristic).

Run by hand (CPU, ~1 h for the full grid on 2 cores; shard with --models/--solvers):
    python benchmarks/quality_analytic.py --models gmm2d --json var/qa_gmm2d.json
    python benchmarks/quality_analytic.py --models gmm64 --json var/qa_gmm64.json
    python benchmarks/quality_analytic.py --report var/qa_gmm2d.json var/qa_gmm64.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections import defaultdict

import torch

from ld3core.analytic import BUILTIN_MIXTURES, AnalyticDenoiser
from ld3core.config import LD3Config
from ld3core.heuristics import HEURISTICS, heuristic
from ld3core.losses import l2
from ld3core.metrics import frechet_distance, off_mode_fraction, sliced_wasserstein
from ld3core.optimize import JobConfig, job_pairs, per_sample_losses, run_job
from ld3core.schedules import EDM, RectifiedFlow, VPLinear
from ld3core.solvers import get_solver
from ld3core.teacher import TeacherSpec, prior_noise
from ld3core.train import train

SCHEDULES = {"edm": EDM, "vp": VPLinear, "flow": RectifiedFlow}
PAPER_VARIANTS = {  # name: (soft, decoupled)
    "ld3": (True, True),
    "ld3_hard": (False, True),
    "ld3_nodec": (True, False),
    "ld3_hard_nodec": (False, False),
}
EVAL_SEED = 2**40  # noise for the distribution metrics, disjoint from every pair seed


def evaluate(den, solver, t, tc, noise, teach, exact, mixture) -> dict[str, float]:
    """Quality of one discretization on fresh noise that no training, selection or guard saw."""
    with torch.no_grad():
        samples = get_solver(solver).fn(den, noise, t, tc)
    return {
        "rmse": float(l2(samples, teach).mean().sqrt()),  # the job's own objective, as an RMS
        "fd": frechet_distance(samples, exact),
        "sw": sliced_wasserstein(samples, exact),
        "off": off_mode_fraction(samples, mixture),
    }


def run_cell(den, mixture, shape, solver, nfe, seed, pairs, noise, teach, exact, args) -> list[dict]:
    """Every method for one (model, solver, NFE, seed)."""
    sch = den.schedule
    ld3 = LD3Config(solver=solver, nfe=nfe, loss="l2", seed=seed, remat=False, val_batch_size=256)
    n = ld3.n_steps
    rows = []
    cands = {h: heuristic(h, sch, n) for h in HEURISTICS}
    val = {h: float(per_sample_losses(den, solver, t, None, pairs["val"], l2, 256).mean()) for h, t in cands.items()}
    for h, t in cands.items():
        rows.append({"method": h, **evaluate(den, solver, t, None, noise, teach, exact, mixture)})
    best_h = min(val, key=val.get)
    for name, (soft, dec) in PAPER_VARIANTS.items():
        t0 = time.perf_counter()
        cfg = ld3.but(soft=soft, decoupled=dec, select_on="soft")
        res = train(den, pairs["train"], pairs["val"], cands[best_h][None], cfg, l2)
        rows.append({"method": name, "train_s": time.perf_counter() - t0, "start": best_h,
                     **evaluate(den, solver, res.t_steps, res.t_model, noise, teach, exact, mixture)})
    t0 = time.perf_counter()
    job = JobConfig(ld3=ld3, teacher=args.teacher_spec, n_train=args.n_train, n_val=args.n_val,
                    n_test=args.n_test, starts=3)
    res = run_job(den, shape, job, l2, dtype=torch.float64, pairs=pairs)
    rows.append({"method": "ours", "train_s": time.perf_counter() - t0, "source": res.source,
                 **evaluate(den, solver, res.t_steps, res.t_model, noise, teach, exact, mixture)})
    rows.append({"method": "ours_learned", "source": res.source,
                 **evaluate(den, solver, res.learned_t_steps, res.learned_t_model, noise, teach, exact, mixture)})
    return [{"solver": solver, "nfe": nfe, "evals": get_solver(solver).nfe(n), "seed": seed, **r} for r in rows]


def measure(args) -> list[dict]:
    out = []
    for model in args.models:
        mixture = BUILTIN_MIXTURES[model]()
        den = AnalyticDenoiser(mixture, SCHEDULES[args.schedule]())
        shape = mixture.sample_shape
        exact = mixture.sample(args.n_samples, torch.Generator().manual_seed(EVAL_SEED))
        noise = prior_noise(range(EVAL_SEED, EVAL_SEED + args.n_samples), shape, den.schedule.sigma_T, dtype=torch.float64)
        # The teacher's own quality (it bounds what a student can reach).
        with torch.no_grad():
            ts = args.teacher_spec
            t_teacher = heuristic(ts.heuristic, den.schedule, get_solver(ts.solver).steps_for_nfe(ts.nfe))
            teach = get_solver(ts.solver).fn(den, noise, t_teacher)
        out.append({"model": model, "schedule": args.schedule, "method": "teacher", "solver": ts.solver, "nfe": ts.nfe, "seed": -1, "rmse": 0.0,
                    "fd": frechet_distance(teach, exact), "sw": sliced_wasserstein(teach, exact),
                    "off": off_mode_fraction(teach, mixture), "exact_off": off_mode_fraction(exact, mixture)})
        for seed in args.seeds:
            job = JobConfig(ld3=LD3Config(loss="l2", seed=seed), teacher=args.teacher_spec,
                            n_train=args.n_train, n_val=args.n_val, n_test=args.n_test)
            pairs = job_pairs(den, shape, job, dtype=torch.float64)
            for solver in args.solvers:
                for nfe in args.nfes:
                    t0 = time.perf_counter()
                    rows = run_cell(den, mixture, shape, solver, nfe, seed, pairs, noise, teach, exact, args)
                    out += [{"model": model, "schedule": args.schedule, **r} for r in rows]
                    print(f"{model} seed {seed} {solver} NFE {nfe}: {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return out


def _ms(v: list[float], fmt: str = ".4f") -> str:
    if not v:
        return "-"
    return f"{statistics.mean(v):{fmt}}" + (f" ± {statistics.stdev(v):{fmt}}" if len(v) > 1 else "")


def report(rows: list[dict]) -> str:
    lines = []
    cells = defaultdict(list)
    for r in rows:
        if r["method"] != "teacher":
            cells[(r["model"], r["solver"], r["nfe"], r["method"])].append(r)
    models = sorted({r["model"] for r in rows})
    for model in models:
        teacher = [r for r in rows if r["model"] == model and r["method"] == "teacher"]
        keys = sorted({(s, n) for (m, s, n, _) in cells if m == model})
        sched = next(r["schedule"] for r in rows if r["model"] == model)
        lines.append(f"\n### {model} ({sched} schedule)\n")
        if teacher:
            t = teacher[0]
            lines.append(f"Teacher ({t['solver']}, NFE {t['nfe']}): FD {t['fd']:.4f}, off-mode {t['off']:.3f} "
                         f"(exact samples: off-mode {t['exact_off']:.3f}).\n")
        meths = ["ld3", "ld3_hard", "ld3_nodec", "ld3_hard_nodec", "ours"]
        lines.append("Distance to the teacher (RMS over 2000 fresh noise samples that no training, selection or "
                     "test guard saw; mean ± std over 3 seeds); best heuristic picked per cell on these samples.\n")
        lines.append("| solver | NFE | best heuristic | " + " | ".join(meths) + " | ours returned LD3 |")
        lines.append("|---|---|---|" + "---|" * len(meths) + "---|")
        for s, n in keys:
            heur = {h: [r["rmse"] for r in cells[(model, s, n, h)]] for h in HEURISTICS}
            bh = min(heur, key=lambda h: statistics.mean(heur[h]))
            srcs = [r["source"] for r in cells[(model, s, n, "ours")]]
            ev = cells[(model, s, n, bh)][0]["evals"]
            lines.append(f"| {s} | {n}{'' if ev == n else f' ({ev})'} | {bh}: {_ms(heur[bh])} | "
                         + " | ".join(_ms([r["rmse"] for r in cells[(model, s, n, m)]]) for m in meths)
                         + f" | {sum(x == 'ld3' for x in srcs)}/{len(srcs)} |")
        lines.append("\nDistribution against exact samples: FD / sliced W2 / off-mode share (mean over seeds).\n")
        lines.append("| solver | NFE | best heuristic (by FD) | ld3 (paper) | ld3_hard | ours |")
        lines.append("|---|---|---|---|---|---|")
        for s, n in keys:
            fd = {h: statistics.mean(r["fd"] for r in cells[(model, s, n, h)]) for h in HEURISTICS}
            bh = min(fd, key=fd.get)

            def fo(m: str, model: str = model, s: str = s, n: int = n) -> str:
                rs = cells[(model, s, n, m)]
                return (f"{statistics.mean(r['fd'] for r in rs):.4f} / {statistics.mean(r['sw'] for r in rs):.4f} / "
                        f"{statistics.mean(r['off'] for r in rs):.3f}")

            lines.append(f"| {s} | {n} | {bh}: {fo(bh)} | {fo('ld3')} | {fo('ld3_hard')} | {fo('ours')} |")
        # Summary: how often each method beats the best heuristic (test RMSE, per seed).
        wins = defaultdict(lambda: [0, 0])
        for s, n in keys:
            for seed_i in range(len(cells[(model, s, n, 'ld3')])):
                best = min(cells[(model, s, n, h)][seed_i]["rmse"] for h in HEURISTICS)
                for m in meths:
                    wins[m][0] += cells[(model, s, n, m)][seed_i]["rmse"] < best
                    wins[m][1] += 1
        lines.append("\nCells (solver x NFE x seed) where the method is closer to the teacher than the best heuristic: "
                     + ", ".join(f"{m} {w[0]}/{w[1]}" for m, w in wins.items()) + ".")
        worse = sum(cells[(model, s, n, "ours")][i]["rmse"] > min(cells[(model, s, n, h)][i]["rmse"] for h in HEURISTICS) + 1e-12
                    for s, n in keys for i in range(len(cells[(model, s, n, "ours")])))
        lines.append(f"Cells where `ours` is worse than the best heuristic on the fresh samples: {worse}.")
        for m in ("ld3", "ours"):
            fd_win = off_loss = 0
            for s, n in keys:
                # The off-mode share is compared with the heuristic of the best FD: the lowest share
                # alone is often a heuristic that collapses every sample onto a few modes.
                fd = {h: statistics.mean(r["fd"] for r in cells[(model, s, n, h)]) for h in HEURISTICS}
                bh = min(fd, key=fd.get)
                off_h = statistics.mean(r["off"] for r in cells[(model, s, n, bh)])
                fd_win += statistics.mean(r["fd"] for r in cells[(model, s, n, m)]) < fd[bh]
                off_loss += statistics.mean(r["off"] for r in cells[(model, s, n, m)]) > off_h
            lines.append(f"`{m}`: lower FD than every heuristic in {fd_win}/{len(keys)} (solver, NFE) cells; "
                         f"more samples off every mode than the heuristic of the best FD in {off_loss}/{len(keys)}.")
        for m in ("ld3", "ours"):
            ts = [r["train_s"] for (mm, *_), rs in cells.items() for r in rs if mm == model and r["method"] == m]
            lines.append(f"Mean wall time per `{m}` run (CPU, 1 thread): {statistics.mean(ts):.1f}s.")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=list(BUILTIN_MIXTURES), choices=list(BUILTIN_MIXTURES))
    p.add_argument("--schedule", default="edm", choices=list(SCHEDULES))
    p.add_argument("--solvers", nargs="+", default=["euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm"])
    p.add_argument("--nfes", nargs="+", type=int, default=[3, 4, 5, 6, 7, 8])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--n-train", type=int, default=50)
    p.add_argument("--n-val", type=int, default=50)
    p.add_argument("--n-test", type=int, default=200)
    p.add_argument("--n-samples", type=int, default=2000)
    p.add_argument("--teacher", nargs=3, default=["unipc", "20", "logsnr"], metavar=("SOLVER", "NFE", "HEURISTIC"))
    p.add_argument("--json", help="write the raw rows here")
    p.add_argument("--report", nargs="+", help="only print the tables of these JSON files")
    args = p.parse_args()
    if args.report:
        rows = [r for f in args.report for r in json.load(open(f))]
        print(report(rows))
        return
    torch.set_num_threads(1)
    args.teacher_spec = TeacherSpec(args.teacher[0], int(args.teacher[1]), args.teacher[2])
    t0 = time.perf_counter()
    rows = measure(args)
    if args.json:
        os.makedirs(os.path.dirname(args.json) or ".", exist_ok=True)
        json.dump(rows, open(args.json, "w"))
    print(report(rows))
    print(f"\n(total {time.perf_counter() - t0:.0f}s; command: {' '.join(sys.argv)})")


if __name__ == "__main__":
    main()
