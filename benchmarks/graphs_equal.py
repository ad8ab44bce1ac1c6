"""Does a change to the loop change what a job learns? Short LD3 jobs on a small diffusers UNet.

Run by hand (CPU minutes). For each solver and seed, one short job (LPIPS-VGG, rematerialization,
accepted moves, soft teacher forcing, decoupled times in phase 2, two starts) eagerly and with
``graphs=True`` (off a GPU: ``make_fx`` records replayed without Python, ``ld3core.graphs``),
and prints whether the learned step times, network times and held-out test loss are identical,
bit for bit. ``--compare`` also sets them against the same jobs run eagerly by another checkout
(``--eager-only --out``), which is how issue 14's restructuring was shown to change no result:

    git worktree add /tmp/before 3f5dc51       # the loop before the restructuring
    (cd /tmp/before && PYTHONPATH=/tmp/before python /path/to/benchmarks/graphs_equal.py --eager-only --out /tmp/before.json)
    python benchmarks/graphs_equal.py --out /tmp/now.json      # beside the first: one core each
    python benchmarks/graphs_equal.py --runs /tmp/now.json --compare /tmp/before.json > benchmarks/results/graphs_equal.md

The script imports ``ld3core`` from the path Python finds first (``PYTHONPATH`` above), so the
same file measures either checkout; it needs nothing of the checkout but ``ld3core``.
"""

from __future__ import annotations

import argparse
import json

import torch
from diffusers import UNet2DModel

from ld3core.config import JobConfig, LD3Config
from ld3core.denoisers import NetworkDenoiser
from ld3core.losses import make_loss
from ld3core.optimize import run_job
from ld3core.schedules import VPDiscrete
from ld3core.teacher import TeacherSpec

SHAPE = (3, 32, 32)


def denoiser() -> NetworkDenoiser:
    """A 0.7M-parameter UNet of DDPM's kind (train_cost.py's --small), random weights, eps under DDPM's betas."""
    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=32, in_channels=3, out_channels=3, block_out_channels=(32, 64), layers_per_block=1,
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"), up_block_types=("AttnUpBlock2D", "UpBlock2D"),
                       attention_head_dim=None, flip_sin_to_cos=False, freq_shift=1, norm_eps=1e-6).eval().requires_grad_(False)
    return NetworkDenoiser(lambda x, tm: unet(x, tm).sample, VPDiscrete.linear(), "eps")


def job(solver: str, seed: int, graphs: bool) -> dict[str, object]:
    ld3 = LD3Config(solver=solver, nfe=5, loss="lpips", phase1_epochs=1, phase2_epochs=2, accept_moves=True, seed=seed)
    cfg = JobConfig(ld3=ld3, teacher=TeacherSpec(nfe=10), n_train=8, n_val=4, n_test=8, starts=2)
    res = run_job(denoiser(), SHAPE, cfg, make_loss("lpips"), **({"graphs": True} if graphs else {}))
    return {"solver": solver, "seed": seed, "graphs": graphs, "t_steps": res.learned_t_steps.tolist(),
            "t_model": res.learned_t_model.tolist(), "test": res.test["ld3"]["mean"], "captured": getattr(res.train, "graphs", None)}


def same(a: dict[str, object], b: dict[str, object]) -> bool:
    return all(a[k] == b[k] for k in ("t_steps", "t_model", "test"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--solvers", nargs="+", default=["unipc", "dpmpp_2m"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--eager-only", action="store_true", help="only the eager jobs (a checkout without graphs)")
    p.add_argument("--out", help="write the jobs' results here (JSON)")
    p.add_argument("--runs", help="report these results (an --out file) instead of running the jobs")
    p.add_argument("--compare", help="results of another checkout's eager jobs (--eager-only --out)")
    args = p.parse_args()
    torch.set_num_threads(1)
    if args.runs:
        runs = json.load(open(args.runs))
    else:
        runs = [job(s, seed, g) for s in args.solvers for seed in args.seeds for g in ((False,) if args.eager_only else (False, True))]
    if args.out:
        with open(args.out, "w") as f:
            json.dump(runs, f)
    other = {(r["solver"], r.get("seed", 0)): r for r in json.load(open(args.compare))} if args.compare else {}
    print("| solver | seed | learned step times (eager) | held-out test loss | graphs = eager | other checkout = eager |")
    print("|---|---|---|---|---|---|")
    for r in (r for r in runs if not r["graphs"]):
        key = (r["solver"], r["seed"])
        graphed = next((g for g in runs if g["graphs"] and (g["solver"], g["seed"]) == key), None)
        times = ", ".join(f"{t:.5f}" for t in r["t_steps"])
        g = "" if graphed is None else ("identical" if same(r, graphed) else "DIFFERENT") + f" ({graphed['captured']})"
        o = "" if key not in other else ("identical" if same(r, other[key]) else "DIFFERENT")
        print(f"| {key[0]} | {key[1]} | {times} | {r['test']:.3g} | {g} | {o} |")


if __name__ == "__main__":
    main()
