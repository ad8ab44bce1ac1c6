"""``ld3 evaluate``: sample quality of a learned schedule and every heuristic (``worker.evaluate``).

    ld3 evaluate --model ddpm-digits --solver unipc --nfe 5 [--schedule result.json] [--n 1000]
                 [--seed 0] [--metrics fd_digits fid lpips_teacher] [--json OUT]

torch and the models are imported when the command runs, not when the command line is read.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from ld3core.config import EVAL_METRICS
from registry.solvers import SOLVER_NAMES


def cmd_evaluate(args: argparse.Namespace) -> int:
    """Print the markdown table; exit status 2 with a message on bad input."""
    from ld3core.classifier import ClassifierError
    from ld3core.fid import InceptionError
    from ld3core.teacher import TeacherSpec
    from registry.settings import SHIPPED_MODELS
    from worker.evaluate import evaluate, read_catalog, read_schedule
    from worker.loaders import load_model

    model_root = args.model_root or os.environ.get("LD3_MODEL_ROOT", str(SHIPPED_MODELS))
    try:
        catalog = read_catalog(model_root)
        if args.model not in catalog:
            raise ValueError(f"--model: unknown key {args.model!r}; the catalog has {sorted(catalog)}")
        learned = read_schedule(args.schedule, args.solver, args.nfe) if args.schedule else None
        teacher = TeacherSpec(args.teacher[0], int(args.teacher[1]), args.teacher[2])
        loaded = load_model(catalog[args.model], model_root, device=args.device)
        table = evaluate(loaded, args.solver, args.nfe, learned, n_samples=args.n, seed=args.seed, metrics=args.metrics,
                         teacher=teacher, model_root=model_root, guidance=args.guidance,
                         batch_size=args.batch_size, device=args.device)
    except (ValueError, ClassifierError, InceptionError) as e:
        print(f"ld3 evaluate: error: {e}", file=sys.stderr)
        return 2
    print(table.markdown())
    if args.json:
        Path(args.json).write_text(json.dumps(table.to_dict(), indent=1))
    return 0


def add_parsers(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="sample quality of a schedule and every heuristic (worker.evaluate)",
                       description="Sample quality of a learned schedule and every heuristic.")
    p.add_argument("--model", required=True, help="catalog key")
    p.add_argument("--solver", required=True, choices=SOLVER_NAMES)
    p.add_argument("--nfe", type=int, required=True)
    p.add_argument("--schedule", help="JSON written by `ld3 optimize --out` (its learned schedule)")
    p.add_argument("--n", type=int, default=1000, help="samples per schedule")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--metrics", nargs="+", choices=EVAL_METRICS, default=list(EVAL_METRICS))
    p.add_argument("--teacher", nargs=3, default=["unipc", "20", "logsnr"], metavar=("SOLVER", "NFE", "HEURISTIC"))
    p.add_argument("--guidance", type=float, help="classifier-free guidance scale (conditional models)")
    p.add_argument("--model-root", help="default: LD3_MODEL_ROOT, else the shipped models/")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", help="also write the table as JSON here")
    p.set_defaults(run=cmd_evaluate)
