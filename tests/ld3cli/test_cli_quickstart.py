"""``ld3 quickstart`` end to end: the embedded service in a subprocess, a real small job over HTTP."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
from api_support import ROOT


@pytest.mark.slow
def test_quickstart_runs_a_real_job_over_http_and_prints_the_schedule(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("LD3_BROKER_URL", None)
    small = ["-o", "n_train=4", "-o", "n_val=4", "-o", "n_test=4", "-o", "teacher_nfe=6", "-o", "phase1_epochs=1",
             "-o", "phase2_epochs=0", "-o", "loss=l2", "-o", "starts=1"]
    proc = subprocess.run([sys.executable, "-m", "ld3cli", "quickstart", "--database-url", f"sqlite:///{tmp_path}/ld3.db",
                           "--port", "0", "--quiet", *small], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "schedule ddpm-digits/unipc/NFE 4 version 1" in out
    t_steps = [float(x) for x in re.search(r"t_steps: (.*)", out).group(1).split(", ")]
    assert len(t_steps) == 5 and all(a > b for a, b in zip(t_steps, t_steps[1:]))
    assert re.search(r"^ld3\s+\d", out, re.M) and "<- served" in out
    assert "service stopped" in proc.stderr  # exit status 0: the job succeeded
