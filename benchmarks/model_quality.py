"""Each shipped model's own sample quality at 50 NFE (the number its model card states).

For every diffusion model of ``models/catalog.json`` (analytic ones skipped): ``--n`` samples
with UniPC on logSNR steps at NFE 50 (class-conditional models: labels ``seed % 10``, guidance
``--guidance``), scored by FD-digits (Frechet distance in the shipped digit classifier's
features to all 1797 sklearn digits) and, with ``--fid``, FID (Inception) to the same digits at
the model's resolution. The floor of each metric at this sample size: a random half of the real
digits (``--n`` of them, at most 898) against the same reference (it is part of it, so the
floor is optimistic).

    python benchmarks/model_quality.py [--n 1000] [--fid] [--write-cards]

``--write-cards`` replaces each card's "Quality: ..." line with the measured figures.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ld3core.heuristics import heuristic  # noqa: E402
from worker.digits import real_digits  # noqa: E402
from worker.evaluate import Scorer, eval_seeds, read_catalog  # noqa: E402
from worker.loaders import load_model  # noqa: E402
from worker.sampling import generate  # noqa: E402

NFE, SOLVER, STEPS = 50, "unipc", "logsnr"
CARD_LINE = re.compile(r"^Quality: .*$", re.MULTILINE)


def model_row(key: str, spec, scorer: Scorer, args: argparse.Namespace) -> dict:
    loaded = load_model(spec, args.model_root)
    seeds = eval_seeds(args.seed, args.n)
    labels = [s % spec.num_classes for s in seeds] if spec.conditioning == "class" else None
    guidance = args.guidance if spec.conditioning == "class" else None
    t0 = time.perf_counter()
    with torch.no_grad():
        images = generate(loaded, SOLVER, heuristic(STEPS, loaded.schedule, NFE), None, seeds,
                          guidance=guidance, labels=labels)
    sample_s = time.perf_counter() - t0
    return {"model": key, "n": args.n, "guidance": guidance, "sample_s": sample_s, **scorer.score(images, None),
            "resolution": images.shape[-1]}


def floor_row(scorer: Scorer, n: int, resolution: int) -> dict:
    real = real_digits(resolution)
    g = torch.Generator().manual_seed(0)
    half = real[torch.randperm(len(real), generator=g)[: min(n, len(real) // 2)]]
    return {"model": f"real digits ({len(half)}, {resolution} px)", "n": len(half), **scorer.score(half, None)}


def card_text(row: dict, floor16: dict) -> str:
    fid = f", FID {row['fid']:.2f}" if "fid" in row else ""
    g = f", guidance {row['guidance']}" if row["guidance"] else ""
    return (f"Quality: FD-digits {row['fd_digits']:.2f}{fid} with UniPC at NFE {NFE} on logSNR steps "
            f"({row['n']} samples{g}; `python benchmarks/model_quality.py`). For scale: real digits score "
            f"{floor16['fd_digits']:.2f} at this sample size.")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--guidance", type=float, default=2.0)
    p.add_argument("--fid", action="store_true")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--model-root", default=str(REPO / "models"))
    p.add_argument("--models", nargs="+", help="catalog keys (default: every diffusion model)")
    p.add_argument("--write-cards", action="store_true")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    scorer = Scorer(("fd_digits",) + (("fid",) if args.fid else ()), model_root=args.model_root)
    catalog = {k: s for k, s in read_catalog(args.model_root).items()
               if s.format != "analytic" and (not args.models or k in args.models)}
    rows = [model_row(k, s, scorer, args) for k, s in catalog.items()]
    floors = {r: floor_row(scorer, args.n, r) for r in sorted({row["resolution"] for row in rows})}
    metrics = ["fd_digits"] + (["fid"] if args.fid else [])
    print(f"# Shipped models at NFE {NFE} ({SOLVER}, {STEPS} steps), CPU\n")
    print("| model | samples | guidance | " + " | ".join(metrics) + " | sampling s |")
    print("|---|---|---|" + "---|" * len(metrics) + "---|")
    for r in rows + list(floors.values()):
        vals = " | ".join(f"{r[m]:.2f}" for m in metrics)
        secs = f"{r['sample_s']:.0f}" if "sample_s" in r else "-"
        print(f"| {r['model']} | {r['n']} | {r.get('guidance') or '-'} | {vals} | {secs} |")
    if args.write_cards:
        for r in rows:
            card = Path(args.model_root) / catalog[r["model"]].location / "MODEL_CARD.md"
            text = card.read_text()
            line = card_text(r, floors[16] if 16 in floors else next(iter(floors.values())))
            new = CARD_LINE.sub(line, text) if CARD_LINE.search(text) else text.rstrip() + f"\n\n{line}\n"
            card.write_text(new)
            print(f"updated {card}", file=sys.stderr)


if __name__ == "__main__":
    main()
