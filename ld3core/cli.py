"""``ld3``: run an LD3 job locally.

    ld3 optimize --model gmm2d-edm --solver unipc --nfe 5
    ld3 optimize --model gmm64-vp --solver dpmpp_3m --nfe 4 --json
    ld3 models
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

import torch

from .accel import compile_denoiser
from .config import LOSSES, LD3Config
from .heuristics import HEURISTICS
from .losses import make_loss
from .models import builtin_names, load_builtin
from .optimize import JobConfig, JobResult, run_job
from .parameterization import MODES
from .solvers import SOLVERS
from .teacher import TeacherSpec
from .train import Progress


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ld3", description="Learn diffusion-ODE time discretizations with LD3.")
    sub = p.add_subparsers(dest="command", required=True)
    o = sub.add_parser("optimize", help="run one LD3 job on a built-in model")
    o.add_argument("--model", default="gmm2d-edm", help="built-in model (see `ld3 models`)")
    o.add_argument("--solver", default="unipc", choices=sorted(SOLVERS))
    o.add_argument("--nfe", type=int, default=5)
    o.add_argument("--loss", choices=LOSSES, help="default: the model's (l2 for analytic models)")
    o.add_argument("--mode", choices=MODES, default="time")
    o.add_argument("--no-decoupled", action="store_true", help="do not learn the model-input times")
    o.add_argument("--hard", action="store_true", help="hard teacher forcing (no soft x'_T)")
    o.add_argument("--starts", type=int, default=3, help="best heuristics trained side by side")
    o.add_argument("--n-train", type=int, default=50)
    o.add_argument("--n-val", type=int, default=50)
    o.add_argument("--n-test", type=int, default=100)
    o.add_argument("--epochs", type=int, nargs=2, metavar=("PHASE1", "PHASE2"), default=(2, 5))
    o.add_argument("--teacher-solver", default="unipc", choices=sorted(SOLVERS))
    o.add_argument("--teacher-nfe", type=int, default=20)
    o.add_argument("--teacher-heuristic", default="logsnr", choices=sorted(HEURISTICS))
    o.add_argument("--seed", type=int, default=0)
    o.add_argument("--device", default="cpu")
    o.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    o.add_argument("--compile", action="store_true", help="torch.compile the network call (inductor; no CUDA graphs)")
    o.add_argument("--json", action="store_true", help="print the result as JSON")
    o.add_argument("--out", help="also write the JSON result to this file")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    sub.add_parser("models", help="list the built-in models")
    return p


class _Bar:
    """The job's phases (``ld3core.progress.PhaseProgress``), fed by ``Progress``."""

    def __init__(self, enabled: bool) -> None:
        from .progress import PhaseProgress

        self.enabled, self.progress = enabled, PhaseProgress()

    def __call__(self, p: Progress) -> None:
        if self.enabled:
            post = {} if p.best is None else {"val": f"{p.val:.4g}" if p.val is not None else "-", "best": f"{p.best:.4g}"}
            self.progress.update(p.phase, p.iteration, p.total, post)

    def close(self) -> None:
        self.progress.close()


def format_report(res: JobResult) -> str:
    """The learned schedule and a quality table: every heuristic and LD3 on the same test pairs."""
    lines = [res.message, ""]
    lines.append("learned t_steps: " + ", ".join(f"{v:.6g}" for v in res.learned_t_steps.tolist()))
    lines.append("learned t_model: " + ", ".join(f"{v:.6g}" for v in res.learned_t_model.tolist()))
    lines.append(f"returned schedule ({res.source}): " + ", ".join(f"{v:.6g}" for v in res.t_steps.tolist()))
    lines.append("")
    lines.append(f"{'schedule':<16}{'val loss':>12}{'test loss':>14}{'± sem':>12}")
    rows = sorted((k for k in res.test if k != "ld3_minus_best"), key=lambda k: res.test[k]["mean"])
    for k in rows:
        val = res.val.get(k, res.val.get("ld3_hard") if k == "ld3" else None)
        mark = " <- returned" if k == res.source else ""
        lines.append(f"{k:<16}{val:>12.5g}{res.test[k]['mean']:>14.5g}{res.test[k]['sem']:>12.3g}{mark}")
    t = res.timings
    lines.append("")
    lines.append("time: " + ", ".join(f"{k[:-2]} {v:.1f}s" for k, v in t.items()))
    return "\n".join(lines)


def optimize(args: argparse.Namespace) -> int:
    model = load_builtin(args.model)
    ld3 = LD3Config(
        solver=args.solver, nfe=args.nfe, loss=args.loss or model.default_loss, mode=args.mode,
        decoupled=not args.no_decoupled, soft=not args.hard, phase1_epochs=args.epochs[0],
        phase2_epochs=args.epochs[1], seed=args.seed,
    )
    cfg = JobConfig(
        ld3=ld3, teacher=TeacherSpec(args.teacher_solver, args.teacher_nfe, args.teacher_heuristic),
        n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, starts=args.starts,
    )
    bar = _Bar(not args.quiet)
    den = compile_denoiser(model.denoiser, args.device) if args.compile else model.denoiser
    try:
        res = run_job(den, model.sample_shape, cfg, make_loss(ld3.loss, device=args.device),
                      device=args.device, dtype=getattr(torch, args.dtype), on_progress=bar)
    finally:
        bar.close()
    report = {"model": args.model, **res.to_dict()}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1) if args.json else format_report(res))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "models":
            print("\n".join(builtin_names()))
            return 0
        return optimize(args)
    except ValueError as e:
        print(f"ld3: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
