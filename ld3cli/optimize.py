"""``ld3 optimize`` and ``ld3 models``: run an LD3 job locally on a built-in model (ld3core only, no service).

    ld3 optimize --model gmm2d-edm --solver unipc --nfe 5
    ld3 optimize --model gmm64-vp --solver dpmpp_3m --nfe 4 --n-train 100 --lr-xi 0.01 --json
    ld3 models

Every job option is a flag (``--teacher-nfe``, ``--no-restore``, ...): the options of
``POST /jobs``, with ld3core.config's defaults. torch is imported when a job runs, not when the
command line is read.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from ld3core import config
from ld3core.config import OPTIONS, JobConfig, LD3Config
from registry.solvers import SOLVER_NAMES

if TYPE_CHECKING:
    from ld3core.optimize import JobResult
    from ld3core.train import Progress


def add_parsers(sub: argparse._SubParsersAction) -> None:
    o = sub.add_parser("optimize", help="run one LD3 job locally on a built-in model (ld3core)")
    o.add_argument("--model", default="gmm2d-edm", help="built-in model (see `ld3 models`)")
    o.add_argument("--solver", default=LD3Config.solver, choices=SOLVER_NAMES)
    o.add_argument("--nfe", type=int, default=LD3Config.nfe)
    o.add_argument("--device", default="cpu")
    o.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    o.add_argument("--compile", action="store_true", help="torch.compile the network call (inductor; no CUDA graphs)")
    o.add_argument("--graphs", action="store_true",
                   help="replay training iterations and validations as CUDA graphs (on a CUDA device; ld3core.graphs)")
    o.add_argument("--json", action="store_true", help="print the result as JSON")
    o.add_argument("--out", help="also write the JSON result to this file")
    o.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_job_options(o.add_argument_group(
        "job options", "the options of POST /jobs under the same names; each one left out keeps ld3core.config's default"))
    o.set_defaults(run=cmd_optimize)
    sub.add_parser("models", help="list ld3core's built-in models").set_defaults(run=cmd_models)


def _add_job_options(group: argparse._ArgumentGroup) -> None:
    """A flag for every job option (``ld3core.config.OPTIONS``), defaulting to None: the config's default."""
    for option in OPTIONS.values():
        flag, default = "--" + option.name.replace("_", "-"), option.default
        if option.name == "loss":
            default = "the model's (l2 for the analytic built-ins)"
        elif isinstance(default, tuple):
            default = " ".join(default)
        kw: dict[str, Any] = {"dest": option.name, "default": None, "help": f"default: {default}"}
        if option.type is bool:
            group.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(option.default, tuple):
            group.add_argument(flag, nargs="+", metavar=option.name.upper(), **kw)
        else:
            group.add_argument(flag, type=option.type, metavar=option.type.__name__.upper(), **kw)
    # Shorthands kept from before every option had its flag.
    group.add_argument("--hard", dest="soft", action="store_false", default=None, help="hard teacher forcing: --no-soft")
    group.add_argument("--epochs", type=int, nargs=2, metavar=("PHASE1", "PHASE2"),
                       help="--phase1-epochs PHASE1 --phase2-epochs PHASE2")


def job_config(args: argparse.Namespace, default_loss: str) -> JobConfig:
    """The JobConfig of ``ld3 optimize``: the options given, every other one ld3core.config's default
    (the same ``job_config`` as a job submitted to the service); the loss defaults to the model's."""
    options = {name: getattr(args, name) for name in OPTIONS}
    if args.epochs:
        options["phase1_epochs"], options["phase2_epochs"] = args.epochs
    options["loss"] = options["loss"] or default_loss
    return config.job_config(args.solver, args.nfe, options)


class _Bar:
    """The job's phases (``ld3core.progress.PhaseProgress``), fed by ``Progress``."""

    def __init__(self, enabled: bool) -> None:
        from ld3core.progress import PhaseProgress

        self.enabled, self.progress = enabled, PhaseProgress()

    def __call__(self, p: "Progress") -> None:
        if self.enabled:
            post = {} if p.best is None else {"val": f"{p.val:.4g}" if p.val is not None else "-", "best": f"{p.best:.4g}"}
            self.progress.update(p.phase, p.iteration, p.total, post)

    def close(self) -> None:
        self.progress.close()


def format_report(res: "JobResult") -> str:
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
    import torch

    from ld3core.accel import compile_denoiser
    from ld3core.losses import make_loss
    from ld3core.models import load_builtin
    from ld3core.optimize import run_job

    model = load_builtin(args.model)
    cfg = job_config(args, model.default_loss)
    bar = _Bar(not args.quiet)
    den = compile_denoiser(model.denoiser, args.device) if args.compile else model.denoiser
    try:
        res = run_job(den, model.sample_shape, cfg, make_loss(cfg.ld3.loss, device=args.device),
                      device=args.device, dtype=getattr(torch, args.dtype), on_progress=bar, graphs=args.graphs)
    finally:
        bar.close()
    report = {"model": args.model, **res.to_dict()}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=1)
    print(json.dumps(report, indent=1) if args.json else format_report(res))
    return 0


def cmd_optimize(args: argparse.Namespace) -> int:
    """``ld3 optimize``: exit status 2 with one line on bad input (an unknown model, an invalid option)."""
    try:
        return optimize(args)
    except ValueError as e:
        print(f"ld3: error: {e}", file=sys.stderr)
        return 2


def cmd_models(args: argparse.Namespace) -> int:
    from ld3core.models import builtin_names

    print("\n".join(builtin_names()))
    return 0
