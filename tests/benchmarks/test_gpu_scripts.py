"""``benchmarks/gpu.sh``, the one command of every GPU measurement, run with ``--dry-run``: each of
its steps on the CPU at toy sizes (train_cost's job eager and with graphs, with its floor; memory
against NFE; the Stable-Diffusion-layout job at ``--tiny``), then gpu_report's summary of what
they wrote, so that the command works the moment a GPU is lent. No timing is asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu")
    env = {**os.environ, "PYTHON": sys.executable}
    run = subprocess.run([str(ROOT / "benchmarks" / "gpu.sh"), "--dry-run", str(folder)], capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=1800)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    log = (folder / "gpu.log").read_text()
    assert ": exit" not in log and ": skipped," not in log, log[-3000:]  # every step ran and succeeded
    return folder, log


def test_the_job_with_graphs_learns_the_eager_schedule_and_has_a_floor(outputs):
    folder, _ = outputs
    eager, graphs = (json.loads((folder / f"job_{m}.json").read_text()) for m in ("eager", "graphs"))
    assert eager["job"]["learned"] == graphs["job"]["learned"]  # on the CPU a replay is a rerun: bit for bit
    assert not eager["job"]["graphs"] and graphs["job"]["graphs"]
    floor = eager["floor"]
    assert floor["calls_per_solve"] == 3 and floor["starts"] == 2 and not floor["cuda_graphs"]
    assert graphs["job"]["captured"]["failed"] == [] and graphs["job"]["captured"]["captured"] >= 1
    # training = iterations x one iteration's floor + the epoch-end moves of the validation x'_T
    assert floor["training_s"] >= eager["job"]["iterations"] * floor["iteration_s"] > 0
    assert set(floor["forward_backward_s"]) == {"4"}  # 2 starts x batch 2, the iteration's batch (JSON keys)


def test_the_stable_diffusion_layout_job_runs_the_latent_recipe_with_guidance(outputs):
    folder, log = outputs
    r = json.loads((folder / "sd_job.json").read_text())
    job = r["job"]
    assert job["config"]["ld3"]["solver"] == "dpmpp_2m" and job["config"]["ld3"]["nfe"] == 6
    assert job["config"]["ld3"]["lr_xi"] == 1e-3 and job["config"]["ld3"]["phase2_epochs"] == 3  # the latent recipe
    assert job["iterations"] == 5 and job["units"]["training_s"] == 5 * job["config"]["starts"]
    assert set(job["timings"]) >= {"teacher_s", "init_s", "training_s", "validation_s", "evaluation_s"}
    assert [it["remat"] for it in r["iteration"]] == [True, False] and all("iteration_s" in it for it in r["iteration"])
    assert "(estimate)" in log and "tiny SD layout" in log


def test_the_memory_step_measures_both_nfes_with_and_without_remat(outputs):
    folder, _ = outputs
    rows = json.loads((folder / "memory.json").read_text())["memory"]
    assert sorted((m["nfe"], m["remat"]) for m in rows) == [(2, False), (2, True), (3, False), (3, True)]


def test_the_report_reads_what_the_steps_wrote(outputs):
    folder, _ = outputs
    report = (folder / "summary.md").read_text()
    assert "equal quality: the same schedule: largest |difference| of the learned step times 0.00e+00" in report
    assert "| training |" in report and "target, at most 39 s:" in report
    assert "remat on: peak NFE 3 / NFE 2 =" in report and "missing" not in report
    assert "Stable-Diffusion-size job (random weights" in report and "one iteration, remat off:" in report
