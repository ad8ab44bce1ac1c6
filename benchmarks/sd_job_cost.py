"""What an LD3 job costs on a Stable-Diffusion-size model: wall time per phase and peak memory.

Run by hand on a GPU (``benchmarks/gpu.sh`` runs it with everything else), never by CI, which
runs only ``--tiny`` to keep the script working. The model is built here, with random weights
(nothing to download; random weights cost what trained ones do), from the Stable Diffusion 1.5
configurations: ``UNet2DConditionModel`` (860M parameters, 4x64x64 latents, cross-attention
to 77x768 text embeddings), a CLIP ViT-L/14 ``CLIPTextModel`` (123M) and the ``AutoencoderKL``
(84M, 512x512 images), under SD's scaled-linear betas with eps prediction. It runs the way the
worker runs a text-conditional catalog model (``worker.sampling.run_model_job``): DPM-Solver++
2M at NFE 6, classifier-free guidance at 7.5 (one batched UNet call for both halves), the
paper's latent recipe (``LD3Config.latent``: batch 2, 2 + 3 epochs, its learning rates, 3
starts), and LPIPS on VAE-decoded images, so every iteration backpropagates through the VAE
decoder and LPIPS-VGG at 512 px. The tokenizer is a small test vocabulary (the prompts only
need to map to token ids; the text encoder is full size).

Prints, and saves with ``--json``:
1. The job at ``--n-train/--n-val/--n-test`` pairs (default 4/2/4: the recipe's per-unit costs
   in a GPU minute or two): each phase's wall time and per-unit cost, the job's peak memory,
   and the default-size job (50/50/300 pairs) estimated as its unit counts x these unit costs
   (an estimate, marked so).
2. One training iteration (the recipe's batch, all starts, guidance) with and without
   rematerialization: wall time and peak memory (CUDA: ``max_memory_allocated`` over the
   iteration minus what was allocated before it).

Commands (from the repository root):
    .venv/bin/python benchmarks/sd_job_cost.py --device cuda --json sd_job.json [--graphs]
    .venv/bin/python benchmarks/sd_job_cost.py --tiny            # CPU, a minute: the code path only
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ld3core.config import JobConfig, job_config  # noqa: E402
from ld3core.heuristics import heuristic  # noqa: E402
from ld3core.schedules import VPDiscrete  # noqa: E402
from ld3core.teacher import Pairs, prior_noise  # noqa: E402
from ld3core.train import train, validation_passes  # noqa: E402
from registry.catalog import ModelSpec  # noqa: E402
from worker.loaders import LoadedModel, PromptEncoder, freeze  # noqa: E402
from worker.sampling import prepare_job, run_model_job  # noqa: E402

MiB = 2**20
PROMPTS = ["red cat", "dog", "red dog", "cat"]
GUIDANCE = 7.5
SOLVER, NFE = "dpmpp_2m", 6

# Stable Diffusion 1.5's configurations (runwayml/stable-diffusion-v1-5: unet/, text_encoder/, vae/).
SD15 = {
    "unet": dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), cross_attention_dim=768, attention_head_dim=8,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")),
    "text": dict(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                 max_position_embeddings=77, hidden_act="quick_gelu", projection_dim=768),
    "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=2, sample_size=512,
                block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                up_block_types=("UpDecoderBlock2D",) * 4, scaling_factor=0.18215),
    "image_shape": (3, 512, 512), "sample_shape": (4, 64, 64), "tokens": 77,
}
# The same layout shrunk, for a CPU run of the code path (--tiny).
TINY = {
    "unet": dict(sample_size=8, in_channels=4, out_channels=4, layers_per_block=1, block_out_channels=(16, 32),
                 cross_attention_dim=16, attention_head_dim=4, norm_num_groups=8,
                 down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D")),
    "text": dict(vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                 max_position_embeddings=8, projection_dim=16),
    "vae": dict(in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, sample_size=16,
                block_out_channels=(8, 8), down_block_types=("DownEncoderBlock2D",) * 2,
                up_block_types=("UpDecoderBlock2D",) * 2, norm_num_groups=8, scaling_factor=0.18215),
    "image_shape": (3, 16, 16), "sample_shape": (4, 8, 8), "tokens": 8,
}


def build_model(layout: dict[str, Any], device: torch.device, vocab_dir: Path) -> LoadedModel:
    """An SD-layout text-to-image model in ld3core's terms, as ``worker.loaders`` would load it from a folder."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from tiny_pipelines import tiny_tokenizer  # a CLIP BPE vocabulary written locally: nothing to download

    tiny_tokenizer(vocab_dir)
    tokenizer = CLIPTokenizer.from_pretrained(vocab_dir, model_max_length=layout["tokens"])
    torch.manual_seed(0)
    with torch.device(device):  # initialised where they run: ~1G parameters
        unet = freeze(UNet2DConditionModel(**layout["unet"]))
        text = freeze(CLIPTextModel(CLIPTextConfig(**layout["text"], bos_token_id=0, eos_token_id=1, pad_token_id=1)))
        vae = freeze(AutoencoderKL(**layout["vae"]))
    spec = ModelSpec(key="sd15-layout-random", format="diffusers", location="sd15-layout-random",
                     schedule="from_scheduler_config", prediction="eps", sample_shape=layout["sample_shape"],
                     conditioning="text", sha256="0" * 64, image_shape=layout["image_shape"])
    encoder = PromptEncoder(tokenizer, text)
    return LoadedModel(spec, None, VPDiscrete.scaled_linear(), "eps", layout["sample_shape"],
                       net=lambda x, t, cond: unet(x, t, encoder_hidden_states=cond).sample, module=unet,
                       null_cond=encoder([""])[0], vae=vae, prompt_encoder=encoder, image_shape=layout["image_shape"])


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_start(device: torch.device) -> float:
    if device.type != "cuda":
        return 0.0
    sync(device)
    torch.cuda.reset_peak_memory_stats(device)
    return torch.cuda.memory_allocated(device)


def peak_since(device: torch.device, base: float) -> float | None:
    return (torch.cuda.max_memory_allocated(device) - base) / MiB if device.type == "cuda" else None


# 1. The job.
def job_cost(loaded: LoadedModel, cfg: JobConfig, device: torch.device, graphs: bool) -> dict[str, Any]:
    base = peak_start(device)
    t0 = time.perf_counter()
    res = run_model_job(loaded, cfg, guidance=GUIDANCE, prompts=PROMPTS, device=device, graphs=graphs)
    sync(device)
    total = time.perf_counter() - t0
    return {"config": cfg.to_dict(), "timings": res.timings, "total_s": total, "iterations": res.train.iterations,
            "units": units(cfg), "peak_mib": peak_since(device, base), "source": res.source,
            "test": {k: v["mean"] for k, v in res.test.items()}}


def units(cfg: JobConfig) -> dict[str, int]:
    """How many of each phase's unit a job of ``cfg`` runs (the unit costs below are per these)."""
    per_epoch = cfg.n_train // cfg.ld3.batch_size
    full, single = validation_passes(cfg.ld3, per_epoch)
    starts = cfg.starts if cfg.init == "best" else 1
    return {
        "teacher_s": cfg.n_train + cfg.n_val + cfg.n_test,  # pairs
        "init_s": len(cfg.heuristics) * cfg.n_val,  # heuristic x validation pair
        "training_s": (cfg.ld3.phase1_epochs + cfg.ld3.phase2_epochs) * per_epoch * starts,  # iteration x start
        "validation_s": (full * (2 if cfg.ld3.soft else 1) + single) * cfg.n_val * starts,  # solve of one pair
        "evaluation_s": (len(cfg.heuristics) + 1) * cfg.n_test,  # schedule x test pair
    }


UNIT_NAMES = {"teacher_s": "teacher pair", "init_s": "heuristic x val pair", "training_s": "iteration x start",
              "validation_s": "validation solve (one pair, one start)", "evaluation_s": "schedule x test pair"}


def job_section(r: dict[str, Any], full: JobConfig) -> str:
    want = units(full)
    rows, estimate = [], 0.0
    for key, name in UNIT_NAMES.items():
        s, n = r["timings"][key], r["units"][key]
        estimate += s / n * want[key]
        rows.append((key[:-2], f"{s:.2f}", str(n), f"{s / n:.4f}", name, str(want[key]), f"{s / n * want[key]:.0f}"))
    rows.append(("**total**", f"**{r['total_s']:.2f}**", "", "", "", "", f"**{estimate:.0f}** (estimate)"))
    c = r["config"]
    peak = "n/a (CPU)" if r["peak_mib"] is None else f"{r['peak_mib'] / 1024:.1f} GiB"
    return (f"## 1. Job: {c['n_train']}/{c['n_val']}/{c['n_test']} train/val/test pairs, {r['iterations']} iterations, "
            f"{c['starts']} starts; peak memory {peak}\n\n"
            + md(["phase", "s", "units", "s per unit", "unit", "units at 50/50/300", "s at 50/50/300"], rows)
            + "\n\nThe last two columns estimate the default-size job (the recipe at 50/50/300 pairs) as its unit counts "
            "x the unit costs measured here: training and validation scale with iterations and pairs; phase "
            "boundaries and warm-up are not rescaled.\n")


# 2. One iteration with and without rematerialization.
class Probe:
    """``should_stop``: let one iteration warm up, measure the next (time, peak memory), stop."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.calls, self.result = device, 0, {}

    def __call__(self) -> bool:
        sync(self.device)
        self.calls += 1
        if self.calls == 2:
            self.base, self.t0 = peak_start(self.device), time.perf_counter()
        if self.calls == 3:
            self.result = {"iteration_s": time.perf_counter() - self.t0, "peak_mib": peak_since(self.device, self.base)}
            return True
        return False


def iteration_cost(loaded: LoadedModel, cfg: JobConfig, device: torch.device, remat: bool) -> dict[str, Any]:
    inputs = prepare_job(loaded, loss=cfg.ld3.loss, guidance=GUIDANCE, prompts=PROMPTS, device=device)
    ld3 = cfg.ld3.but(remat=remat, phase1_epochs=0, phase2_epochs=1, val_every=10**9)
    n = 4 * ld3.batch_size
    x = prior_noise(range(n + 2), loaded.sample_shape, loaded.schedule.sigma_T, device=device)
    cond = inputs.conditions(range(n + 2))
    target = torch.zeros_like(x)  # the teacher's outputs do not change the cost
    init = torch.stack([heuristic(h, loaded.schedule, ld3.n_steps) for h in cfg.heuristics[: cfg.starts]]).to(device)
    probe = Probe(device)
    try:
        train(inputs.denoiser, Pairs(x[:n], target[:n], cond[:n]), Pairs(x[n:], target[n:], cond[n:]), init, ld3,
              inputs.loss_fn, should_stop=probe)
    except torch.cuda.OutOfMemoryError as e:  # without rematerialization an SD-size iteration may not fit at all
        del x, cond, target, init
        torch.cuda.empty_cache()
        return {"remat": remat, "out_of_memory": str(e).splitlines()[0]}
    return {"remat": remat, **probe.result}


def iteration_section(rows: list[dict[str, Any]], cfg: JobConfig) -> str:
    out = [("yes" if r["remat"] else "no", "out of memory" if "out_of_memory" in r else f"{r['iteration_s']:.3f}",
            r.get("out_of_memory", "n/a (CPU)" if r.get("peak_mib") is None else f"{r['peak_mib'] / 1024:.2f}"))
           for r in rows]
    b = cfg.ld3.batch_size * cfg.starts
    return (f"## 2. One training iteration: {cfg.starts} starts x batch {cfg.ld3.batch_size} = {b} samples, guidance "
            f"(UNet batch {2 * b}), NFE {NFE}, backward through the VAE decoder and {cfg.ld3.loss}\n\n"
            + md(["remat", "iteration s", "peak increase GiB"], out) + "\n")


def md(headers: list[str], rows: list[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--tiny", action="store_true", help="the same layout shrunk (a CPU check of the code path)")
    p.add_argument("--n-train", type=int, default=4)
    p.add_argument("--n-val", type=int, default=2)
    p.add_argument("--n-test", type=int, default=4)
    p.add_argument("--teacher-nfe", type=int, default=20)
    p.add_argument("--loss", choices=("lpips", "lpips_alex"), default="lpips", help="LPIPS backbone (VGG: the job default)")
    p.add_argument("--graphs", action="store_true", help="replay iterations and validations as CUDA graphs")
    p.add_argument("--only", choices=("job", "iteration"), nargs="+", default=["job", "iteration"])
    p.add_argument("--json", metavar="OUT", help="also save the numbers here")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    device = torch.device(args.device)
    layout = TINY if args.tiny else SD15
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        loaded = build_model(layout, device, Path(tmp) / "tokenizer")
        build_s = time.perf_counter() - t0
    params = {name: sum(p.numel() for p in m.parameters()) / 1e6
              for name, m in (("unet", loaded.module), ("text encoder", loaded.prompt_encoder.text_encoder),
                              ("vae", loaded.vae))}
    cfg = job_config(SOLVER, NFE, {"n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test,
                                   "teacher_nfe": args.teacher_nfe, "loss": args.loss}, latent=True)
    hw = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# LD3 job cost: {'tiny SD layout' if args.tiny else 'Stable Diffusion 1.5 layout'} (random weights; "
          + ", ".join(f"{k} {v:.1f}M" for k, v in params.items()) + f"), {SOLVER} NFE {NFE}, guidance {GUIDANCE}, "
          f"latent recipe, {args.loss} on decoded images, {device} ({hw}), torch {torch.__version__}"
          f"{', CUDA graphs' if args.graphs else ''}; model built in {build_s:.1f} s\n")
    results: dict[str, Any] = {"device": str(device), "params_m": params, "args": vars(args), "build_s": build_s}
    if "job" in args.only:
        results["job"] = job_cost(loaded, cfg, device, args.graphs)
        print(job_section(results["job"], job_config(SOLVER, NFE, {"loss": args.loss}, latent=True)))
    if "iteration" in args.only:
        results["iteration"] = [iteration_cost(loaded, cfg, device, remat) for remat in (True, False)]
        print(iteration_section(results["iteration"], cfg))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
