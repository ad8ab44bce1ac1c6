"""The scripts of ``benchmarks/gpu.sh``, run small on the CPU so that they work the moment a GPU is
lent: train_cost's job eager and with graphs (and its floor), the Stable-Diffusion-layout job
(``--tiny``), and gpu_report's summary of what they wrote. No timing is asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL_JOB = ["--small", "--threads", "1", "--only", "job", "network", "--floor", "--n-train", "4", "--n-val", "2",
             "--n-test", "2", "--starts", "2", "--job-nfe", "3", "--teacher-nfe", "4", "--repeats", "1"]


def script(name: str, *args: str) -> str:
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / name), *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("gpu")
    script("train_cost.py", *SMALL_JOB, "--json", str(folder / "job_eager.json"))
    script("train_cost.py", *SMALL_JOB, "--graphs", "--json", str(folder / "job_graphs.json"))
    sd = script("sd_job_cost.py", "--tiny", "--device", "cpu", "--n-train", "2", "--n-val", "1", "--n-test", "1",
                "--teacher-nfe", "4", "--loss", "lpips_alex", "--only", "job", "--json", str(folder / "sd_job.json"))
    return folder, sd


def test_the_job_with_graphs_learns_the_eager_schedule_and_has_a_floor(outputs):
    folder, _ = outputs
    eager, graphs = (json.loads((folder / f"job_{m}.json").read_text()) for m in ("eager", "graphs"))
    assert eager["job"]["learned"] == graphs["job"]["learned"]  # on the CPU a replay is a rerun: bit for bit
    assert not eager["job"]["graphs"] and graphs["job"]["graphs"]
    floor = eager["floor"]
    assert floor["calls_per_solve"] == 3 and floor["starts"] == 2 and not floor["cuda_graphs"]
    # training = iterations x one iteration's floor + the epoch-end moves of the validation x'_T
    assert floor["training_s"] >= eager["job"]["iterations"] * floor["iteration_s"] > 0
    assert set(floor["forward_backward_s"]) == {"4"}  # 2 starts x batch 2, the iteration's batch (JSON keys)


def test_the_stable_diffusion_layout_job_runs_the_latent_recipe_with_guidance(outputs):
    folder, printed = outputs
    r = json.loads((folder / "sd_job.json").read_text())
    job = r["job"]
    assert job["config"]["ld3"]["solver"] == "dpmpp_2m" and job["config"]["ld3"]["nfe"] == 6
    assert job["config"]["ld3"]["lr_xi"] == 1e-3 and job["config"]["ld3"]["phase2_epochs"] == 3  # the latent recipe
    assert job["iterations"] == 5 and job["units"]["training_s"] == 5 * job["config"]["starts"]
    assert set(job["timings"]) >= {"teacher_s", "init_s", "training_s", "validation_s", "evaluation_s"}
    assert "(estimate)" in printed and "tiny SD layout" in printed


def test_the_report_reads_what_the_scripts_wrote(outputs):
    folder, _ = outputs
    report = script("gpu_report.py", str(folder))
    assert "equal quality: the same schedule: largest |difference| of the learned step times 0.00e+00" in report
    assert "| training |" in report and "target, at most 39 s:" in report
    assert "## One iteration against NFE\n\nmissing" in report  # memory.json was not written here
    assert "Stable-Diffusion-size job (random weights" in report
