"""``ld3 quickstart``: serve, submit, follow, print, stop, in one go (the README's first command)."""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time

from .flags import add_option_flags, options
from .remote import follow

# NFE 4: where a learned schedule matters most. At UniPC NFE 5 the best heuristic on this model
# (time-quadratic) is within 2-3% of LD3 (the authors' code and ours, README "LD3 against the
# authors' loop"), a gap no honest guard can confirm on 50 test pairs.
QUICKSTART = {"model": "ddpm-digits", "solver": "unipc", "nfe": 4}
# The paper's recipe (LPIPS loss, decoupled times, soft teacher forcing, 3 starts) on fewer
# teacher pairs and 2 + 2 epochs (40 iterations): a few minutes on 2 CPU cores. -o overrides.
QUICKSTART_OPTIONS = {"n_train": 20, "n_val": 20, "n_test": 50, "phase2_epochs": 2}


def _free_port(preferred: int) -> int:
    for port in (preferred, 0):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise RuntimeError("no free TCP port on 127.0.0.1")


def _wait_ready(client, proc: subprocess.Popen, timeout_s: float = 120.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the service exited with status {proc.returncode} before it was ready")
        try:
            if client.http.get("/readyz").status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"the service was not ready after {timeout_s:.0f} s")


def cmd_quickstart(args: argparse.Namespace) -> int:
    """Start the embedded service, submit the demo job over HTTP, follow it, print the result, stop."""
    from client.http_client import Client

    port = _free_port(args.port)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("LD3_BROKER_URL", None)  # embedded: the service runs the job itself
    if args.database_url:
        env["LD3_DATABASE_URL"] = args.database_url
    cmd = [sys.executable, "-m", "ld3cli", "serve", "--no-auth", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]
    print(f"starting the embedded service on http://127.0.0.1:{port} ...", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=env, stdout=sys.stderr if args.verbose else subprocess.DEVNULL,
                            stderr=sys.stderr if args.verbose else subprocess.DEVNULL)
    try:
        with Client(f"http://127.0.0.1:{port}") as c:
            _wait_ready(c, proc)
            opts = {**QUICKSTART_OPTIONS, **options(args)}
            job = c.submit(args.model, args.solver, args.nfe, options=opts)
            print(f"submitted job {job['id']}: {args.model} / {args.solver} / NFE {args.nfe} "
                  f"(POST /jobs -> {job['state']})", file=sys.stderr, flush=True)
            job = follow(c, job["id"], quiet=args.quiet)
        return 0 if job["state"] == "succeeded" else 1
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=90)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        print("service stopped", file=sys.stderr)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    q = sub.add_parser("quickstart", help="start the embedded service, learn a demo schedule over HTTP, print it, stop",
                       description="Starts `ld3 serve --no-auth` (embedded, no broker) in a subprocess, submits "
                                   f"{QUICKSTART['model']} / {QUICKSTART['solver']} / NFE {QUICKSTART['nfe']} with options "
                                   f"{QUICKSTART_OPTIONS} over HTTP, follows it, prints the schedule and its quality "
                                   "table, and stops the service.")
    q.add_argument("--model", default=QUICKSTART["model"])
    q.add_argument("--solver", default=QUICKSTART["solver"])
    q.add_argument("--nfe", type=int, default=QUICKSTART["nfe"])
    add_option_flags(q)
    q.add_argument("--port", type=int, default=8000, help="preferred port (a free one if taken)")
    q.add_argument("--database-url", help="default: LD3_DATABASE_URL or sqlite:///var/ld3.db")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("--verbose", action="store_true", help="show the service's log")
    q.set_defaults(run=cmd_quickstart)
