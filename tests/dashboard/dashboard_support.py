"""Constants of the dashboard tests (a module of its own: test files import it by this unique name)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1366, "height": 860}  # a laptop screen
POLL_MS = 300  # the dashboard's refresh interval in these tests (chosen in its own setting)

GMM2D_EDM = {"key": "gmm2d-edm", "format": "analytic", "location": "gmm2d-edm", "schedule": "builtin",
             "prediction": "builtin", "sample_shape": [2], "description": "2-D Gaussian mixture, EDM (analytic)"}
# A job of a few seconds: 20 training iterations, validated every 2.
FAST_OPTIONS = {"loss": "l2", "n_train": 20, "n_val": 10, "n_test": 20, "teacher_nfe": 20,
                "phase1_epochs": 1, "phase2_epochs": 1, "val_every": 2}
# A job of a few seconds more, long enough for its progress bar to be seen moving at POLL_MS.
WATCHED_OPTIONS = {**FAST_OPTIONS, "n_train": 160}
# A job long enough to be cancelled while it runs (thousands of iterations).
LONG_OPTIONS = {**FAST_OPTIONS, "n_train": 400, "phase1_epochs": 20, "phase2_epochs": 20, "seed": 7}
# A job of seconds on the shipped image model ddpm-digits (the worker's grid test's set): 16
# pairs validated every 2 iterations move LD3 off its start, so its samples differ from the
# heuristic's. time_uniform is a heuristic the plot cannot draw from a schedule's end points.
DIGITS_OPTIONS = {"loss": "l2", "teacher_solver": "euler", "teacher_nfe": 20, "teacher_heuristic": "edm",
                  "n_train": 16, "n_val": 8, "n_test": 3, "batch_size": 2, "starts": 1, "phase1_epochs": 1,
                  "phase2_epochs": 1, "remat": False, "val_every": 2, "heuristics": ["time_uniform", "logsnr", "edm"]}
JOB_TIMEOUT_S = 120
# The keys of the tests, by the scope they are named after: a submitter can also read.
KEY_SCOPES = {"schedules:read": ["schedules:read"], "jobs:submit": ["schedules:read", "jobs:submit"], "admin": ["admin"]}
