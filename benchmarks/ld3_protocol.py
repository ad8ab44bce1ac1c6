"""Our LD3 loop against the authors' figures, and each of their loop's habits measured alone.

The protocol of issue 10, on the shipped pixel models: per (model, solver, NFE, seed) an LD3 job
with 50 training + 50 validation (+ the job's default 300 test pairs, for its own guard) teacher pairs, the
teacher being the same solver at NFE 20 on logSNR steps; the paper's pixel recipe (batch 2,
2 + 5 epochs, RMSprop 5e-3 on xi, SGD 0.1/NFE on xi^c, patience 5, factor 0.8), LPIPS-VGG;
then every schedule - the learned one, what the job's guard serves, every heuristic, the
teacher - samples the same 500 held-out noises (``worker.evaluate.eval_seeds(0, 500)``,
disjoint from every job's pairs) and is scored by LPIPS-VGG and RMSE to the teacher's sample
of the same noise and by FD-digits (the shipped classifier's features against the sklearn
digits). The heuristics and the teacher do not depend on the seed or the variant: they are
scored once per (model, solver, NFE).

A variant is a set of loop settings (``VARIANTS``): ``ours`` is the loop as it was before
issue 10, each other one changes one habit of the authors' trainer, ``authors`` takes all
four, and ``default`` is whatever ``LD3Config``/``JobConfig`` default to now.

Results go to ``<out>/<tag>.jsonl``, a line per finished job (a cut-short run loses only its
running jobs; rerunning skips the done ones), heuristic rows to ``<tag>_heuristics.jsonl``;
the report (``<tag>.md``) is rewritten after every job and by ``--report``.

    python benchmarks/ld3_protocol.py --variants ours restore authors --models ddpm-digits --nfes 4
    python benchmarks/ld3_protocol.py --variants default                 # the full table, resumable
    python benchmarks/ld3_protocol.py --report benchmarks/results/ld3_protocol.jsonl
    python benchmarks/ld3_protocol.py --reguard benchmarks/results/ld3_protocol.jsonl --variants default  # today's guard, no training

Each job takes 3-10 min on one CPU thread (LPIPS-VGG on 32 px dominates); ``--workers 2``
runs two side by side.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import math
import multiprocessing as mp
import os
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = ("ddpm-digits", "digits-flow")
SOLVERS = ("unipc", "dpmpp_2m")
NFES = (4, 5)
SEEDS = (0, 1, 2)
N_HELD_OUT = 500
EVAL_SEED = 0
SIZE = {"n_train": 50, "n_val": 50}  # n_test: the job's default (the guard's pairs)

# The loop before issue 10, spelled out, so that later default changes do not move it.
OURS = {"ld3": {"restore": False, "val_every": 5, "select_on": "hard", "accept_moves": False}, "job": {"init": "best"}}
VARIANTS: dict[str, dict[str, dict[str, Any]]] = {
    "ours": OURS,
    "restore": {"ld3": {**OURS["ld3"], "restore": True}, "job": OURS["job"]},
    "soft_every_iter": {"ld3": {**OURS["ld3"], "val_every": 1, "select_on": "soft"}, "job": OURS["job"]},
    "restore_soft": {"ld3": {**OURS["ld3"], "restore": True, "val_every": 1, "select_on": "soft"}, "job": OURS["job"]},
    "accept_moves": {"ld3": {**OURS["ld3"], "accept_moves": True}, "job": OURS["job"]},
    "uniform_init": {"ld3": OURS["ld3"], "job": {"init": "time_uniform"}},
    "authors": {"ld3": {"restore": True, "val_every": 1, "select_on": "soft", "accept_moves": True},
                "job": {"init": "time_uniform"}},
    "default": {"ld3": {}, "job": {}},
    # the default loop trained twice as long in phase 2 (2 + 10 epochs): its best iteration is
    # in the last 15% in most jobs, so is it still improving?
    "long": {"ld3": {"phase2_epochs": 10}, "job": {}},
}

# Issue 10's run of the authors' code (vinhsuhi/LD3) on ddpm-digits, seed 0, same protocol:
# (solver, NFE) -> LPIPS, RMSE to the teacher, FD-digits on the 500 held-out samples.
AUTHORS = {
    ("unipc", 4): (0.0330, 0.0751, 76.4), ("unipc", 5): (0.0308, 0.0700, 56.0),
    ("dpmpp_2m", 4): (0.0338, 0.0758, 91.2), ("dpmpp_2m", 5): (0.0167, 0.0511, 60.3),
}
METRICS = ("lpips", "rmse", "fd")

_CACHE: dict[Any, Any] = {}  # per worker process: models, scorer, held-out teacher images


def job_config(inputs, solver: str, nfe: int, seed: int, variant: str):
    from ld3core.optimize import JobConfig
    from ld3core.teacher import TeacherSpec

    v = VARIANTS[variant]
    ld3 = inputs.ld3_config(solver=solver, nfe=nfe, loss="lpips", seed=seed, **v["ld3"])
    return JobConfig(ld3=ld3, teacher=TeacherSpec(solver, 20, "logsnr"), **SIZE, **v["job"])


def _model(model: str, device: str):
    from worker.evaluate import Scorer, read_catalog
    from worker.loaders import load_model
    from worker.sampling import prepare_job

    if model not in _CACHE:
        root = REPO / "models"
        loaded = load_model(read_catalog(root)[model], root, device=device)
        _CACHE[model] = (loaded, prepare_job(loaded, loss="lpips", device=device, model_root=root))
    if "scorer" not in _CACHE:
        _CACHE["scorer"] = Scorer(("fd_digits", "lpips_teacher"), model_root=REPO / "models", device=device)
    return _CACHE[model]


def _teacher_images(loaded, model: str, solver: str, device: str):
    from ld3core.teacher import TeacherSpec
    from worker.evaluate import teacher_samples

    key = ("teacher", model, solver)
    if key not in _CACHE:
        _CACHE[key] = teacher_samples(loaded, n_samples=N_HELD_OUT, seed=EVAL_SEED, teacher=TeacherSpec(solver, 20, "logsnr"),
                                      device=device)
    return _CACHE[key]


def score(loaded, model: str, solver: str, t_steps, t_model, device: str) -> dict[str, float]:
    """LPIPS and RMSE to the teacher's sample of the same held-out noise (means over the samples
    of the per-sample distances), and FD-digits."""
    import torch

    from worker.evaluate import eval_seeds
    from worker.sampling import generate

    teacher = _teacher_images(loaded, model, solver, device)
    t_steps = torch.as_tensor(t_steps, dtype=torch.float64)
    t_model = None if t_model is None else torch.as_tensor(t_model, dtype=torch.float64)
    images = generate(loaded, solver, t_steps, t_model, eval_seeds(EVAL_SEED, N_HELD_OUT), batch_size=250, device=device)
    s = _CACHE["scorer"].score(images, teacher)
    rmse = float((images.double() - teacher.double()).square().flatten(1).mean(1).sqrt().mean())
    return {"lpips": s["lpips_teacher"], "lpips_sem": s["lpips_teacher_sem"], "rmse": rmse, "fd": s["fd_digits"]}


def heuristic_rows(model: str, solver: str, nfe: int, device: str) -> dict[str, Any]:
    """Every heuristic and the teacher on the held-out noise (independent of seed and variant)."""
    from ld3core.heuristics import HEURISTICS, heuristic
    from ld3core.solvers import get_solver

    loaded, _ = _model(model, device)
    n = get_solver(solver).steps_for_nfe(nfe)
    rows = {h: score(loaded, model, solver, heuristic(h, loaded.schedule, n), None, device) for h in HEURISTICS}
    fd_teacher = _CACHE["scorer"].score(_teacher_images(loaded, model, solver, device), None)["fd_digits"]
    return {"model": model, "solver": solver, "nfe": nfe, "heuristics": rows, "teacher_fd": fd_teacher}


def rescore(path: Path, hpath: Path, device: str, threads: int) -> None:
    """Every stored schedule (learned and heuristic) scored again by ``score``, files rewritten."""
    import torch

    torch.set_num_threads(threads)
    rows = _read(path)
    for r in rows:
        loaded, _ = _model(r["model"], device)
        r["learned"] = score(loaded, r["model"], r["solver"], r["t_steps"], r["t_model"], device)
    heur = {(h["model"], h["solver"], h["nfe"]): h for h in _read(hpath)}
    fresh = [heuristic_rows(m, s, n, device) for (m, s, n) in heur]
    for p, items in ((path, rows), (hpath, fresh)):
        tmp = p.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(x) + "\n" for x in items))
        tmp.replace(p)


def reguard(path: Path, variants: list[str], device: str, threads: int) -> None:
    """The job's test and guard run again, as they are now (``JobConfig``'s n_test, the catalog's
    feature map), on every stored learned schedule of ``variants``: the test pairs come from the
    job's own seeds, so this is what the job would serve today. No training. The file is
    rewritten; the guard's first decision stays in ``source_at_run``."""
    import torch

    from ld3core.heuristics import heuristic
    from ld3core.optimize import JobConfig, held_out_test
    from ld3core.teacher import teacher_pairs

    torch.set_num_threads(threads)
    rows = _read(path)
    n_test = JobConfig().n_test
    for r in rows:
        if r["variant"] not in variants or r.get("n_test") == n_test and "guard" in r:
            continue
        loaded, inputs = _model(r["model"], device)
        cfg = job_config(inputs, r["solver"], r["nfe"], r["seed"], r["variant"])
        pairs = teacher_pairs(inputs.denoiser, cfg.teacher, cfg.seeds()["test"], inputs.sample_shape,
                              batch_size=cfg.batch_size, device=device)
        cands = {h: heuristic(h, inputs.denoiser.schedule, cfg.ld3.n_steps) for h in cfg.heuristics}
        learned = (torch.tensor(r["t_steps"], dtype=torch.float64), torch.tensor(r["t_model"], dtype=torch.float64))
        test, best_h, v = held_out_test(inputs.denoiser, cfg, cands, learned, pairs, inputs.loss_fn, features=inputs.features)
        r.setdefault("source_at_run", {"source": r["source"], "n_test": r.get("n_test", 100), "job_test": r["job_test"]})
        r.update(source="ld3" if v.serve_ld3 else best_h, best_heuristic_test=best_h, job_test=test, guard=v.to_dict(),
                 n_test=cfg.n_test)
        print(f"{r['variant']:>16} {r['model']} {r['solver']} NFE {r['nfe']} seed {r['seed']}: served "
              f"{r['source_at_run']['source']} -> {r['source']} ({v.reason})", flush=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(x) + "\n" for x in rows))
    tmp.replace(path)


def _best_iteration(history: list[dict[str, Any]], k: int) -> int:
    """The iteration at which start ``k`` last improved its selection loss."""
    best, at = math.inf, 0
    for row in history:
        if row["best"][k] < best:
            best, at = row["best"][k], row["iteration"]
    return at


def run_cell(cell: dict[str, Any], device: str, threads: int) -> dict[str, Any]:
    import torch

    from ld3core.optimize import run_job

    torch.set_num_threads(threads)
    loaded, inputs = _model(cell["model"], device)
    cfg = job_config(inputs, cell["solver"], cell["nfe"], cell["seed"], cell["variant"])
    t0 = time.perf_counter()
    res = run_job(inputs.denoiser, inputs.sample_shape, cfg, inputs.loss_fn, device=device, features=inputs.features)
    job_s = time.perf_counter() - t0
    learned = score(loaded, cell["model"], cell["solver"], res.learned_t_steps, res.learned_t_model, device)
    decoupled_moved = bool((res.learned_t_model - res.learned_t_steps).abs().max() > 0)
    return {
        **cell, "job_s": job_s, "config": cfg.to_dict(), "learned": learned,
        "t_steps": res.learned_t_steps.tolist(), "t_model": res.learned_t_model.tolist(),
        "source": res.source, "best_heuristic_test": res.best_heuristic, "job_test": res.test, "job_val": res.val,
        "guard": res.guard, "n_test": cfg.n_test,
        "start": res.train.start, "best_iteration": _best_iteration(res.train.history, res.train.start),
        "iterations": res.train.iterations, "decoupled_moved": decoupled_moved, "timings": res.timings,
    }


def _worker(cell: dict[str, Any], heur_needed: bool, device: str, threads: int) -> tuple[dict | None, dict | None, str | None]:
    try:
        import torch

        torch.set_num_threads(threads)
        heur = heuristic_rows(cell["model"], cell["solver"], cell["nfe"], device) if heur_needed else None
        return run_cell(cell, device, threads), heur, None
    except Exception:  # noqa: BLE001 - reported, the other cells go on
        return None, None, traceback.format_exc()


# Report.

def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def _mean_sd(v: list[float]) -> str:
    if not v:
        return "-"
    m = statistics.fmean(v)
    return f"{m:.4g}" + (f" ± {statistics.stdev(v):.2g}" if len(v) > 1 else "")


def served_scores(row: dict[str, Any], heur: dict[str, Any]) -> dict[str, float]:
    """Held-out scores of what the job's guard served: the learned schedule or its heuristic."""
    return row["learned"] if row["source"] == "ld3" else heur["heuristics"][row["source"]]


def report(rows: list[dict[str, Any]], heur: list[dict[str, Any]]) -> str:
    """Markdown: the per-cell table (mean ± sd over seeds) next to the authors' figures and the
    best heuristic, then the ablation (each variant against ``ours`` on the jobs both ran)."""
    hmap = {(h["model"], h["solver"], h["nfe"]): h for h in heur}
    by: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["model"], r["solver"], r["nfe"], r["variant"]), []).append(r)
    out = [f"# LD3 protocol (issue 10): {N_HELD_OUT} held-out samples, mean ± sd over seeds", "",
           "LPIPS / RMSE: to the teacher's sample of the same noise (lower is closer); FD: FD-digits. "
           "'best heur.' is the heuristic with the lowest held-out LPIPS (an oracle); 'authors' is "
           "issue 10's run of the authors' code (seed 0). served LD3: jobs whose guard served the "
           "learned schedule. xi^c moved: jobs whose learned model times differ from the step times. served: the "
           "held-out scores of what the guard served (mean over seeds), and in how many jobs it is at least as good "
           "as every heuristic in LPIPS and in FD (the oracle best of each).", "",
           "| model | solver | NFE | schedule | seeds | LPIPS | RMSE | FD | best iter. | served LD3 | xi^c moved | LPIPS <= best heur. "
           "| served: LPIPS / FD | served <= best heur. (LPIPS, FD) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for (m, s, n) in sorted({k[:3] for k in by}):
        h = hmap.get((m, s, n))
        if h:
            name = min(h["heuristics"], key=lambda x: h["heuristics"][x]["lpips"])
            b = h["heuristics"][name]
            out.append(f"| {m} | {s} | {n} | best heur. ({name}) | - | {b['lpips']:.4f} | {b['rmse']:.4f} | {b['fd']:.1f} | | | | | | |")
            best_fd = min(h["heuristics"], key=lambda x: h["heuristics"][x]["fd"])
            if best_fd != name:
                f = h["heuristics"][best_fd]
                out.append(f"| {m} | {s} | {n} | best heur. on FD ({best_fd}) | - | {f['lpips']:.4f} | {f['rmse']:.4f} | {f['fd']:.1f} "
                           "| | | | | | |")
            out.append(f"| {m} | {s} | {n} | teacher | - | 0 | 0 | {h['teacher_fd']:.1f} | | | | | | |")
        if m == "ddpm-digits" and (s, n) in AUTHORS:
            a = AUTHORS[(s, n)]
            out.append(f"| {m} | {s} | {n} | authors' LD3 (seed 0) | 1 | {a[0]:.4f} | {a[1]:.4f} | {a[2]:.1f} | | | | | | |")
        for v in VARIANTS:
            rs = sorted(by.get((m, s, n, v), []), key=lambda r: r["seed"])
            if not rs:
                continue
            vals = {k: [r["learned"][k] for r in rs] for k in METRICS}
            worse = sum(r["learned"]["lpips"] > min(x["lpips"] for x in h["heuristics"].values()) for r in rs) if h else None
            served = [served_scores(r, h) for r in rs] if h else []
            ok = (sum(x["lpips"] <= min(y["lpips"] for y in h["heuristics"].values()) for x in served),
                  sum(x["fd"] <= min(y["fd"] for y in h["heuristics"].values()) for x in served)) if h else None
            out.append(
                f"| {m} | {s} | {n} | {v} | {','.join(str(r['seed']) for r in rs)} | {_mean_sd(vals['lpips'])} | "
                f"{_mean_sd(vals['rmse'])} | {_mean_sd(vals['fd'])} | {_mean_sd([r['best_iteration'] for r in rs])} | "
                f"{sum(r['source'] == 'ld3' for r in rs)}/{len(rs)} | {sum(r['decoupled_moved'] for r in rs)}/{len(rs)} | "
                f"{'-' if worse is None else f'{len(rs) - worse}/{len(rs)}'} | "
                + (f"{statistics.fmean(x['lpips'] for x in served):.4f} / {statistics.fmean(x['fd'] for x in served):.1f} | "
                   f"{ok[0]}/{len(rs)}, {ok[1]}/{len(rs)} |" if h else "- | - |"))
    out += ["", "## Ablation: each variant against `ours` on the same (model, solver, NFE, seed)", "",
            "Mean of the per-job relative change (negative = closer to the teacher / lower FD), "
            "and how many paired jobs got better.", "",
            "| variant | paired jobs | LPIPS change | RMSE change | FD change | LPIPS better in | FD better in |",
            "|---|---|---|---|---|---|---|"]
    base = {(r["model"], r["solver"], r["nfe"], r["seed"]): r for r in rows if r["variant"] == "ours"}
    for v in VARIANTS:
        if v == "ours":
            continue
        pairs = [(base[k], r) for r in rows if r["variant"] == v
                 and (k := (r["model"], r["solver"], r["nfe"], r["seed"])) in base]
        if not pairs:
            continue
        ch = {k: [b2["learned"][k] / b1["learned"][k] - 1 for b1, b2 in pairs] for k in METRICS}
        better = {k: sum(b2["learned"][k] < b1["learned"][k] for b1, b2 in pairs) for k in METRICS}
        out.append(f"| {v} | {len(pairs)} | {statistics.fmean(ch['lpips']):+.1%} | {statistics.fmean(ch['rmse']):+.1%} | "
                   f"{statistics.fmean(ch['fd']):+.1%} | {better['lpips']}/{len(pairs)} | {better['fd']}/{len(pairs)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variants", nargs="+", default=["default"], choices=list(VARIANTS))
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS))
    ap.add_argument("--nfes", nargs="+", type=int, default=list(NFES))
    ap.add_argument("--seeds", nargs="+", type=int, default=list(SEEDS))
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per worker")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results"))
    ap.add_argument("--tag", default="ld3_protocol")
    ap.add_argument("--report", metavar="JSONL", help="only rewrite the report of an earlier run")
    ap.add_argument("--rescore", metavar="JSONL", help="score an earlier run's schedules again (no training), in place")
    ap.add_argument("--reguard", metavar="JSONL", help="run the job's test guard again, as it is now, on the --variants' stored "
                    "learned schedules (no training), in place")
    a = ap.parse_args(argv)

    given = a.report or a.rescore or a.reguard
    path = Path(given) if given else Path(a.out) / f"{a.tag}.jsonl"
    hpath = path.with_name(path.stem + "_heuristics.jsonl")
    md = path.with_suffix(".md")

    def write_report() -> None:
        md.write_text(report(_read(path), _read(hpath)))

    if a.report:
        write_report()
        print(md.read_text())
        return 0
    if a.rescore:
        rescore(path, hpath, a.device, a.threads)
        write_report()
        return 0
    if a.reguard:
        reguard(path, a.variants, a.device, a.threads)
        write_report()
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["model"], r["solver"], r["nfe"], r["seed"], r["variant"]) for r in _read(path)}
    have_h = {(h["model"], h["solver"], h["nfe"]) for h in _read(hpath)}
    # Variants outermost: an interrupted run has whole variants, not a bit of each.
    cells = [{"model": m, "solver": s, "nfe": n, "seed": sd, "variant": v}
             for v in a.variants for m in a.models for n in a.nfes for sd in a.seeds for s in a.solvers
             if (m, s, n, sd, v) not in done]
    print(f"{len(cells)} jobs to run ({len(done)} done) -> {path}", flush=True)
    claimed: set[tuple] = set()
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(a.workers, mp_context=ctx) as pool:
        futs = {}
        for c in cells:
            hk = (c["model"], c["solver"], c["nfe"])
            need = hk not in have_h and hk not in claimed
            claimed.add(hk)
            futs[pool.submit(_worker, c, need, a.device, a.threads)] = c
        for f in cf.as_completed(futs):
            row, heur, err = f.result()
            c = futs[f]
            if err:
                print(f"FAILED {c}:\n{err}", flush=True)
                continue
            if heur:
                with hpath.open("a") as fh:
                    fh.write(json.dumps(heur) + "\n")
            with path.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            write_report()
            lr = row["learned"]
            print(f"{c['variant']:>16} {c['model']} {c['solver']} NFE {c['nfe']} seed {c['seed']}: LPIPS {lr['lpips']:.4f} "
                  f"RMSE {lr['rmse']:.4f} FD {lr['fd']:.1f} (best iter {row['best_iteration']}, served {row['source']}, "
                  f"{row['job_s']:.0f} s)", flush=True)
    write_report()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
