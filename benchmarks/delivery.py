"""What each consumer of a served schedule samples, measured on the same held-out noise (issue 12).

Per shipped model, solver family and NFE (4-6; Heun only at odd NFE), a short LD3 job makes the
served record: the fields the worker stores for a version, ``quality.consumers`` (the job's own
measure of each consumer's form) included. Then the same held-out noises go through each path
from that record, and each path's samples are scored against the teacher's samples of the same
noise (LPIPS-VGG, RMSE) and by FD-digits; ``max |diff|`` is the largest difference of a path's
samples from the certified ones.

Paths:
- ``certified``: ld3core's solver on the record, what the job certified;
- ``ld3 diffusers``: ``client.diffusers_scheduler.LD3Scheduler`` in diffusers' sampling loop;
- ``ld3 k-diffusion``: ``client.k_diffusion``'s sampler with its model wrapper;
- ``stock diffusers``: the stock scheduler of the solver (its defaults: ``final_sigmas_type``
  "zero") through ``client.apply_schedule`` with the ``diffusers`` export;
- ``k-diffusion``: k-diffusion's own ``sample_euler`` / ``sample_heun`` / ``sample_dpmpp_2m`` on the
  ``k-diffusion`` export, with k-diffusion's wrapper (``DiscreteEpsDDPMDenoiser``, fractional
  timesteps) for VP-discrete models and sigma x 1000 for flow models;
- ``comfyui``: the ``comfyui`` export's ``sigmas_text`` read as ComfyUI's ``ManualSigmas`` node
  reads it, through the same k-diffusion samplers (ComfyUI's are k-diffusion's), with ComfyUI's
  model sampling: the nearest training timestep for VP-discrete models, sigma x 1000 for flow.
A path that cannot take the record says why in its cell. The job's figure for the consumer's
form (``quality.consumers``: ld3core's solver on that form) stands beside the measured path.

    python benchmarks/delivery.py                               # every shipped model, solver, NFE 4-6
    python benchmarks/delivery.py --models ddpm-digits --solvers dpmpp_2m --nfes 5
    python benchmarks/delivery.py --report benchmarks/results/delivery.jsonl

Results: ``benchmarks/results/delivery.jsonl`` (a line per cell, resumable) and ``delivery.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

MODELS = ("ddpm-digits", "digits-flow", "digits-latent")
SOLVERS = ("euler", "heun", "dpmpp_2m", "dpmpp_3m", "unipc", "ipndm")
NFES = (4, 5, 6)
PATHS = ("certified", "ld3 diffusers", "ld3 k-diffusion", "stock diffusers", "k-diffusion", "comfyui")
JOB = {"n_train": 16, "n_val": 16, "n_test": 64}  # a short job: the record matters here, not its quality
EPOCHS = {"phase1_epochs": 1, "phase2_epochs": 3}
N_HELD_OUT, EVAL_SEED = 200, 0

_CACHE: dict[Any, Any] = {}


def _model(name: str, device: str):
    from worker.evaluate import Scorer, read_catalog
    from worker.loaders import load_model
    from worker.sampling import prepare_job

    if name not in _CACHE:
        root = REPO / "models"
        spec = read_catalog(root)[name]
        loaded = load_model(spec, root, device=device)
        _CACHE[name] = (spec, loaded, prepare_job(loaded, loss="lpips", device=device, model_root=root))
    if "scorer" not in _CACHE:
        _CACHE["scorer"] = Scorer(("fd_digits", "lpips_teacher"), model_root=REPO / "models", device=device)
    return _CACHE[name]


def served_record(name: str, solver: str, nfe: int, device: str, target: str = "ld3", seed: int = 0) -> dict[str, Any]:
    """A short LD3 job's version, as the worker would publish it (``worker.version.schedule_version``)."""
    from ld3core.optimize import JobConfig, run_job
    from ld3core.teacher import TeacherSpec
    from worker.version import schedule_version

    spec, loaded, inputs = _model(name, device)
    from ld3core.config import target_constraints

    cfg = JobConfig(ld3=inputs.ld3_config(solver=solver, nfe=nfe, loss="lpips", target=target, seed=seed, **EPOCHS,
                                          **target_constraints(target)),
                    teacher=TeacherSpec(solver, 20, "logsnr"), **JOB)
    res = run_job(inputs.denoiser, inputs.sample_shape, cfg, inputs.loss_fn, device=device, features=inputs.features)
    v = schedule_version(res, cfg, loaded, spec, job_id="delivery-benchmark", guidance=None, samples_png=None)
    return json.loads(v.model_dump_json(exclude={"samples_png"}))


def _noise(loaded, device: str):
    from worker.evaluate import eval_seeds
    from worker.sampling import prior_noise

    return prior_noise(eval_seeds(EVAL_SEED, N_HELD_OUT), loaded.sample_shape, loaded.schedule.sigma_T, device=device)


def _teacher(name: str, loaded, solver: str, device: str):
    from ld3core.teacher import TeacherSpec
    from worker.evaluate import teacher_samples

    key = ("teacher", name, solver)
    if key not in _CACHE:
        _CACHE[key] = teacher_samples(loaded, n_samples=N_HELD_OUT, seed=EVAL_SEED, teacher=TeacherSpec(solver, 20, "logsnr"),
                                      device=device)
    return _CACHE[key]


# The paths: (loaded model, record, x_T in ld3core's space) -> samples in ld3core's space at t = 0.

def certified(loaded, record, x_T):
    from client.stored_run import StoredRun
    from ld3core.solvers import run

    return run(StoredRun.from_version(record).start(x_T), loaded.denoiser)


def _diffusers_loop(loaded, scheduler, x_T):
    """diffusers' sampling loop (as DDPMPipeline / the SD pipelines run it) with ``loaded.net``."""
    import torch

    # Unit noise, scaled as a pipeline does (flow-matching schedulers have no init_noise_sigma and no
    # scale_model_input: SD3-style pipelines start from unit noise and feed the latents as they are).
    x = x_T / loaded.schedule.sigma_T * getattr(scheduler, "init_noise_sigma", 1.0)
    scale = getattr(scheduler, "scale_model_input", lambda sample, t: sample)
    for t in scheduler.timesteps:
        model_in = scale(x, t)
        pred = loaded.net(model_in, torch.as_tensor(t, dtype=torch.float32, device=x.device).expand(x.shape[0]))
        x = scheduler.step(pred, t, x).prev_sample
    return x


STOCK = {  # solver -> (diffusers class name, config overrides) for a VP-discrete / a flow model
    "euler": (("EulerDiscreteScheduler", {}), ("FlowMatchEulerDiscreteScheduler", {"shift": 1.0})),
    "heun": (("HeunDiscreteScheduler", {}), ("FlowMatchHeunDiscreteScheduler", {"shift": 1.0})),
    "dpmpp_2m": (("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2}),
                 ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_flow_sigmas": True,
                                                  "prediction_type": "flow_prediction", "flow_shift": 1.0})),
    "dpmpp_3m": (("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3}),
                 ("DPMSolverMultistepScheduler", {"algorithm_type": "dpmsolver++", "solver_order": 3, "use_flow_sigmas": True,
                                                  "prediction_type": "flow_prediction", "flow_shift": 1.0})),
}


def stock_diffusers(loaded, record, x_T):
    import diffusers

    from client import apply_schedule
    from registry.exports import export

    if record["solver"] not in STOCK:
        raise NotApplicable(f"diffusers has no scheduler that runs {record['solver']} with custom steps")
    flow = loaded.schedule.name == "flow"
    cls_name, overrides = STOCK[record["solver"]][flow]
    base = json.loads((REPO / "models" / loaded.spec.location / _scheduler_config(loaded)).read_text())
    base = {k: v for k, v in base.items() if not k.startswith("_")}
    scheduler = getattr(diffusers, cls_name).from_config({**base, **overrides})
    apply_schedule(scheduler, export(record, "diffusers"))
    return _diffusers_loop(loaded, scheduler, x_T)


def ld3_diffusers(loaded, record, x_T):
    from client.diffusers_scheduler import LD3Scheduler

    prediction = {"eps": "epsilon", "v": "v_prediction", "x0": "sample", "flow": "flow_prediction"}[loaded.prediction]
    return _diffusers_loop(loaded, LD3Scheduler.from_version(record, prediction), x_T)


def ld3_k_diffusion(loaded, record, x_T):
    from client.k_diffusion import LD3Denoiser, LD3Sampler, k_scale

    sampler = LD3Sampler(record)
    model = LD3Denoiser(loaded.net, sampler.run, loaded.prediction, model_time=loaded.model_time)
    sch, t = sampler.run.schedule, sampler.run.t_steps.to(x_T.device)
    x = sampler(model, x_T / k_scale(sch, t[0]).to(x_T), sampler.sigmas.to(x_T.device), disable=True)
    return x if sampler.run.final == "zero" else x * k_scale(sch, t[-1]).to(x)


K_SAMPLERS = {"euler": "sample_euler", "heun": "sample_heun", "dpmpp_2m": "sample_dpmpp_2m"}


def _kd(name: str):
    """k-diffusion's submodule without its package ``__init__`` (tests/client/k_diffusion_support.py)."""
    support = str(REPO / "tests" / "client")
    if support not in sys.path:
        sys.path.insert(0, support)
    from k_diffusion_support import kd

    return kd(name)


class _FlowDenoiser:
    """A flow-velocity network as a k-diffusion denoiser, the way ComfyUI samples flow models
    (model sampling CONST): x0 = x - sigma v(x, sigma x 1000), x and sigma as they are."""

    def __init__(self, net) -> None:
        self.net = net

    def __call__(self, x, sigma, **kwargs):
        s = sigma.reshape(-1, *[1] * (x.ndim - 1)).to(x)
        return x - s * self.net(x, (sigma * 1000).to(x.dtype))


def _k_stock(loaded, record, x_T, sigmas, quantize: bool):
    """k-diffusion's own sampler of the record's solver on ``sigmas`` with a stock model wrapper."""
    import torch

    if record["solver"] not in K_SAMPLERS:
        raise NotApplicable(f"no k-diffusion sampler runs {record['solver']} (k-diffusion 0.1.1 has sample_euler, "
                            "sample_heun, sample_dpmpp_2m of ours)")
    sch = loaded.schedule
    sigmas = torch.tensor(sigmas, dtype=torch.float32, device=x_T.device)
    if sch.name == "flow":
        model, x = _FlowDenoiser(loaded.net), x_T
    elif sch.name == "vp_discrete" and loaded.prediction == "eps":
        ac = sch.alphas_cumprod.to(x_T.device, torch.float32)
        model = _kd("external").DiscreteEpsDDPMDenoiser(lambda x, t, **kw: loaded.net(x, t), ac, quantize=quantize)
        x = x_T / sch.alpha(record["t_steps"][0]).to(x_T)  # the VE state at sigmas[0]: x_t / alpha_t
    else:
        raise NotApplicable(f"no stock k-diffusion wrapper for a {sch.name} {loaded.prediction} model here")
    return getattr(_kd("sampling"), K_SAMPLERS[record["solver"]])(model, x, sigmas, disable=True)


def k_diffusion(loaded, record, x_T):
    from registry.exports import export

    return _k_stock(loaded, record, x_T, export(record, "k-diffusion")["payload"]["sigmas"], quantize=False)


def comfyui(loaded, record, x_T):
    from registry.exports import export

    sigmas = manual_sigmas(export(record, "comfyui")["payload"]["sigmas_text"])
    return _k_stock(loaded, record, x_T, sigmas, quantize=True)  # ComfyUI: the nearest training timestep


def _scheduler_config(loaded) -> str:
    root = REPO / "models" / loaded.spec.location
    return "scheduler/scheduler_config.json" if (root / "scheduler").is_dir() else "scheduler_config.json"


class NotApplicable(Exception):
    """The path cannot take this record; the message says why."""


def manual_sigmas(text: str) -> list[float]:
    """Numbers as ComfyUI's ManualSigmas node reads its text (comfy_extras/nodes_custom_sampler.py)."""
    return [float(s) for s in re.findall(r"[-+]?(?:\d*\.*\d+)", text)]


PATH_FUNCS: dict[str, Callable[..., Any]] = {"certified": certified, "ld3 diffusers": ld3_diffusers,
                                              "ld3 k-diffusion": ld3_k_diffusion, "stock diffusers": stock_diffusers,
                                              "k-diffusion": k_diffusion, "comfyui": comfyui}


def run_cell(name: str, solver: str, nfe: int, device: str, target: str = "ld3", seed: int = 0) -> dict[str, Any]:
    t0 = time.perf_counter()
    record = served_record(name, solver, nfe, device, target, seed)
    return score_paths(name, solver, nfe, record, time.perf_counter() - t0, device)


def score_paths(name: str, solver: str, nfe: int, record: dict[str, Any], job_s: float, device: str) -> dict[str, Any]:
    """Every path from ``record`` on the held-out noise, scored."""
    import torch

    _, loaded, _ = _model(name, device)
    x_T = _noise(loaded, device)
    teacher = _teacher(name, loaded, solver, device)
    out: dict[str, Any] = {"model": name, "solver": solver, "nfe": nfe, "job_s": job_s, "record": record, "paths": {}}
    ref = None
    for path in PATHS:
        fn = PATH_FUNCS.get(path)
        if fn is None:
            out["paths"][path] = {"error": "not built yet"}
            continue
        try:
            with torch.no_grad():
                x0 = fn(loaded, record, x_T.clone())
        except NotApplicable as e:
            out["paths"][path] = {"error": str(e)}
            continue
        except Exception as e:  # noqa: BLE001  (a path that breaks is a finding: its error is the cell)
            out["paths"][path] = {"error": f"{type(e).__name__}: {e}"}
            traceback.print_exc()
            continue
        images = (loaded.decode(x0) if loaded.latent else x0).clamp(-1, 1).cpu()
        s = _CACHE["scorer"].score(images, teacher)
        rmse = float((images.double() - teacher.double()).square().flatten(1).mean(1).sqrt().mean())
        row = {"lpips": s["lpips_teacher"], "rmse": rmse, "fd": s["fd_digits"]}
        if path == "certified":
            ref = x0
        elif ref is not None:
            row["max_diff"] = float((x0.double() - ref.double()).abs().max())
        out["paths"][path] = row
    out["best_heuristic"] = _best_heuristic(loaded, record, x_T, teacher)
    return out


def _best_heuristic(loaded, record, x_T, teacher) -> dict[str, Any]:
    """The job's best heuristic (on its test pairs) on the same held-out noise, under the record's final rule."""
    import torch

    from ld3core.heuristics import heuristic
    from ld3core.solvers import get_solver

    name = record["quality"]["best_heuristic"]["name"]
    spec = get_solver(record["solver"])
    t = heuristic(name, loaded.schedule, spec.steps_for_nfe(record["nfe"])).to(x_T.device)
    with torch.no_grad():
        x0 = spec.ending(record["config"]["ld3"]["final"])(loaded.denoiser, x_T.clone(), t)
    images = (loaded.decode(x0) if loaded.latent else x0).clamp(-1, 1).cpu()
    s = _CACHE["scorer"].score(images, teacher)
    return {"name": name, "lpips": s["lpips_teacher"], "fd": s["fd_digits"]}


def report(rows: list[dict[str, Any]]) -> str:
    lines = ["# Delivery: what each consumer samples of the served record (issue 12)", "",
             f"{N_HELD_OUT} held-out noises per cell. certified and best heur.: LPIPS-VGG to the teacher's samples of the "
             "same noise / FD-digits. Our paths: the largest difference from the certified samples (ld3core's space). "
             "Stock paths: held-out LPIPS minus the certified, and in brackets what the job stated for that consumer's "
             "form (quality.consumers: paired test-loss cost on its 64 test pairs; 'not run': the job marks that the "
             "consumer does not run this solver as ld3 does, so its export says so); '!' where the path is worse than "
             "the best heuristic and the export says so, '!!' where it does not.", "",
             "| model | solver | NFE | served | best heur. | certified | " + " | ".join(PATHS[1:]) + " |",
             "|---|---|---|---|---|---|" + "---|" * (len(PATHS) - 1)]
    for r in rows:
        cells = []
        consumers = (r["record"]["quality"] or {}).get("consumers") or {}
        cert, best = r["paths"].get("certified", {}), r.get("best_heuristic") or {}
        for path in PATHS[1:]:
            p = r["paths"].get(path, {})
            if "error" in p:
                cells.append("n/a" if "no " in p["error"] else f"error: {p['error'][:60]}")
                continue
            if path in CONSUMER_OF:
                c = consumers.get(CONSUMER_OF[path]) or {}
                stated = "exact" if c.get("exact") else ("not run" if not c.get("runs", True) else f"{c['cost']['mean']:+.4f}")
                cell = f"{p['lpips'] - cert['lpips']:+.4f} ({stated})"
                if best and p["lpips"] > best["lpips"]:
                    cell += " !" if _says_worse(r["record"], CONSUMER_OF[path]) else " !!"
            else:
                cell = f"{p['max_diff']:.0e}"
            cells.append(cell)
        head = f"{best['name']} {best['lpips']:.4f} / {best['fd']:.0f}" if best else "-"
        lines.append(f"| {r['model']} | {r['solver']} | {r['nfe']} | {r['record']['source']} | {head} | "
                     f"{cert.get('lpips', float('nan')):.4f} / {cert.get('fd', float('nan')):.0f} | " + " | ".join(cells) + " |")
    lines += ["", *summary(rows)]
    return "\n".join(lines) + "\n"


CONSUMER_OF = {"stock diffusers": "diffusers", "k-diffusion": "k-diffusion", "comfyui": "comfyui"}


def _says_worse(record: dict[str, Any], fmt: str) -> bool:
    """Whether the export says it is not exact and, in its first caveat, that it is not better than the best heuristic."""
    from registry.exports import export

    e = export(record, fmt)
    return not e["payload"]["exact"] and ("than the best heuristic" in e["caveats"][0] or "does not run" in e["caveats"][0])


EXACT_TOL = 1e-4  # float32 rounding through a few steps of a 16x16 network


def summary(rows: list[dict[str, Any]]) -> list[str]:
    """The issue's targets, counted: our paths exact; each stock path against the cost the job
    stated for its form; stock paths worse than the best heuristic, and whether the export says so."""
    from registry.exports import export

    out = ["Targets:", ""]
    for path in ("ld3 diffusers", "ld3 k-diffusion"):
        ran = [r["paths"][path] for r in rows if "max_diff" in r["paths"].get(path, {})]
        worst = max((p["max_diff"] for p in ran), default=float("nan"))
        out.append(f"- {path}: {sum(p['max_diff'] <= EXACT_TOL for p in ran)}/{len(ran)} cells within {EXACT_TOL:g} of the "
                   f"certified samples (largest difference {worst:.1e})")
    for path, (consumer, fmt) in {"stock diffusers": ("diffusers", "diffusers"), "k-diffusion": ("k-diffusion", "k-diffusion"),
                                  "comfyui": ("comfyui", "comfyui")}.items():
        ran = [r for r in rows if "lpips" in r["paths"].get(path, {}) and "lpips" in r["paths"].get("certified", {})]
        worse = [r for r in ran if r["paths"][path]["lpips"] > r["best_heuristic"]["lpips"]]
        said = [r for r in worse if _says_worse(r["record"], fmt)]
        exact = [r for r in ran if export(r["record"], fmt)["payload"]["exact"]]
        gaps = [r["paths"][path]["lpips"] - r["paths"]["certified"]["lpips"] for r in ran]
        stated = [((r["record"]["quality"]["consumers"] or {}).get(consumer) or {}).get("cost", {}).get("mean", 0.0) for r in ran]
        out.append(f"- {path}: ran in {len(ran)} cells ({len(exact)} exported as exact); held-out LPIPS minus the certified: "
                   f"mean {_mean(gaps):+.4f} against the job's stated cost mean {_mean(stated):+.4f} (its own 64 test pairs); "
                   f"worse than the best heuristic in {len(worse)} cells, {len(said)} of them said so in the export")
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("nan")


def _read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    ap.add_argument("--solvers", nargs="+", default=list(SOLVERS))
    ap.add_argument("--nfes", nargs="+", type=int, default=list(NFES))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--target", default="ld3", help="the job option target: learn for that consumer (ld3core.config.CONSUMERS)")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "delivery.jsonl"))
    ap.add_argument("--report", metavar="JSONL", help="only rewrite the report of an earlier run")
    ap.add_argument("--rescore", metavar="JSONL", help="run every path again on the stored records (no jobs), in place")
    args = ap.parse_args(argv)
    if args.report:
        p = Path(args.report)
        p.with_suffix(".md").write_text(report(_read(p)))
        return
    import torch

    if args.rescore:
        torch.set_num_threads(args.threads)
        p = Path(args.rescore)
        rows = [score_paths(r["model"], r["solver"], r["nfe"], r["record"], r["job_s"], args.device) for r in _read(p)]
        tmp = p.with_suffix(".tmp")
        tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
        tmp.replace(p)
        p.with_suffix(".md").write_text(report(rows))
        return

    from ld3core.solvers import get_solver

    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = {(r["model"], r["solver"], r["nfe"], r.get("target", "ld3"), r.get("seed", 0)) for r in _read(out)}
    for name in args.models:
        for solver in args.solvers:
            for nfe, seed in ((n, s) for n in args.nfes for s in args.seeds):
                spec = get_solver(solver)
                if spec.nfe(spec.steps_for_nfe(nfe)) != nfe or (name, solver, nfe, args.target, seed) in done:
                    continue  # Heun at an even NFE leaves an evaluation unused: not a budget anyone runs
                row = {**run_cell(name, solver, nfe, args.device, args.target, seed), "target": args.target, "seed": seed}
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                out.with_suffix(".md").write_text(report(_read(out)))
                ok = {k: (f"{v['lpips']:.4f}" if "lpips" in v else "n/a") for k, v in row["paths"].items()}
                print(f"{name} {solver} NFE {nfe}: served {row['record']['source']} ({row['job_s']:.0f} s job) {ok}", flush=True)


if __name__ == "__main__":
    main()
