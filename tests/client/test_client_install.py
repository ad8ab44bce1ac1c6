"""The ``[client]`` extra alone, as an inference service installs it: a fresh virtual environment (no system site
packages) gets the project from this checkout with that extra, the service's own pipeline library and its own torch;
there the client fetches a schedule from the running service, applies it to a stock diffusers scheduler and runs it
exactly through ``LD3Scheduler`` and ``LD3Sampler``.

torch 2.13.0 is the inference service's torch, not the worker's (constraints.txt pins 2.14.1); on this machine it is
a CPU build on disk (/opt/wheels). diffusers and the rest come from the package index. Nothing is cached outside tmp."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import uvicorn
from api_support import settings_for, version_data

from api.main import create_app

ROOT = Path(__file__).resolve().parents[2]
CLIENT_INSTALL = ["diffusers==0.42.1", "torch==2.13.0"]
NOT_FOR_CLIENTS = ("celery", "sqlalchemy", "fastapi", "uvicorn", "alembic", "psycopg", "prometheus_client", "transformers")

FETCH_AND_APPLY = """
import json, sys
import torch
from diffusers import DPMSolverMultistepScheduler
import client, ld3core.schedules, ld3core.solvers
from client import Client, apply_schedule

url, key = sys.argv[1:]
with Client(url, key) as c:
    served = c.schedule("ddpm-digits", "dpmpp_2m", 5, format="diffusers")
scheduler = DPMSolverMultistepScheduler(beta_start=1e-4, beta_end=0.02, beta_schedule="linear")
scheduler.set_timesteps(5)
stock = scheduler.timesteps.tolist()
apply_schedule(scheduler, served)

# The exact integrations on the service's own torch: LD3Scheduler in a diffusers loop and LD3Sampler,
# on a stand-in network (eps = 0.1 x), from the raw record; both must give ld3core's own result.
from client.diffusers_scheduler import LD3Scheduler
from client.k_diffusion import LD3Denoiser, LD3Sampler
from client.stored_run import StoredRun
from ld3core.denoisers import NetworkDenoiser
from ld3core.solvers import run

with Client(url, key) as c:
    version = c.schedule("ddpm-digits", "dpmpp_2m", 5)
net = lambda x, t: 0.1 * x
calls = []
ours = LD3Scheduler.from_version(version)
ours.set_timesteps(ours.nfe)
x = torch.randn(2, 1, 4, 4, generator=torch.Generator().manual_seed(0)) * ours.init_noise_sigma
x_T = x.clone()
for t in ours.timesteps:
    calls.append(float(t))
    x = ours.step(net(x, t), t, x).prev_sample
stored = StoredRun.from_version(version)
reference = run(stored.start(x_T), NetworkDenoiser(net, stored.schedule, "eps"))
sampler = LD3Sampler(version)
alpha = stored.schedule.alpha(stored.t_steps).float()  # k-diffusion's x is x_t / alpha_t (the version ends at t_min)
k_out = sampler(LD3Denoiser(net, sampler.run, "eps"), x_T / alpha[0], sampler.sigmas) * alpha[-1]
print(json.dumps({"client": client.__file__, "solvers": sorted(ld3core.solvers.SOLVERS),
                  "served": served["payload"]["timesteps"], "stock": stock, "applied": scheduler.timesteps.tolist(),
                  "calls": len(calls), "scheduler_diff": float((x - reference).abs().max()),
                  "sampler_diff": float((k_out - reference).abs().max())}))
"""


@pytest.fixture(scope="module")
def client_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The python of the fresh venv, the project installed there (not editable) with its [client] extra."""
    venv = tmp_path_factory.mktemp("client-venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    # -I: no PYTHONPATH, no current folder on the path; --no-cache-dir: nothing kept outside tmp.
    pip = subprocess.run([str(python), "-I", "-m", "pip", "install", "-q", "--no-cache-dir", "--disable-pip-version-check",
                          f"{ROOT}[client]", *CLIENT_INSTALL], capture_output=True, text=True, timeout=900)
    assert pip.returncode == 0, pip.stderr[-3000:]
    return python


@pytest.fixture
def db_url(sqlite_url: str) -> str:
    return sqlite_url  # one backend is enough: what is under test is the install


@pytest.fixture
def live_url(db_url, factory, queue):
    """The app served by uvicorn on a free port, in a thread (jobs are only recorded, not run)."""
    server = uvicorn.Server(uvicorn.Config(create_app(settings_for(db_url), queue), host="127.0.0.1", port=0,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    server.should_exit = True
    thread.join(10)


def test_the_extra_brings_nothing_of_the_server_and_keeps_the_services_torch(client_python):
    code = ("import importlib.util, json, torch\n"
            f"print(json.dumps([torch.__version__, [m for m in {NOT_FOR_CLIENTS!r} if importlib.util.find_spec(m)]]))")
    run = subprocess.run([str(client_python), "-I", "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    torch_version, server_packages = json.loads(run.stdout)
    assert torch_version.split("+")[0] == "2.13.0", torch_version
    assert server_packages == []


def test_a_fetched_schedule_applies_to_a_stock_diffusers_scheduler(client_python, live_url, add_version, key_for):
    add_version(5, solver="dpmpp_2m")
    key = key_for("schedules:read")["X-API-Key"]
    run = subprocess.run([str(client_python), "-I", "-c", FETCH_AND_APPLY, live_url, key], capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    assert Path(out["client"]).is_relative_to(client_python.parents[1]), out["client"]  # the installed copy
    assert "dpmpp_2m" in out["solvers"]  # ld3core's solvers import on the client's torch alone
    learned = [round(t) for t in version_data(5, solver="dpmpp_2m").model_timesteps[:-1]]
    assert out["served"] == out["applied"] == learned != out["stock"]
    # LD3Scheduler and LD3Sampler run there too, on torch 2.13, and compute what ld3core computes.
    # The sampler works on x / alpha_t (about 160 x at t = 1): float32 rounding there is ~1e-5 of the result.
    assert out["calls"] == 5 and out["scheduler_diff"] <= 1e-5 and out["sampler_diff"] <= 1e-4, out
