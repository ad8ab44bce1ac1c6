"""Throughput and latency of ``GET /schedules/...`` under concurrent load, next to a no-op endpoint.

    python benchmarks/serve_load.py                       # SQLite, 8 clients, 3 rounds of 5 s per endpoint
    python benchmarks/serve_load.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/ld3_bench

One uvicorn process (one worker) serves the real app (``api.main.create_app``, API-key auth
on, metrics middleware on) plus ``GET /noop`` (an ``async def`` returning ``{}``, no auth) in
the same process. The database holds one schedule version, active. The schedule is fetched
as k-diffusion sigmas (what a sampler polls, ~600 bytes) and raw (every stored field with the
provenance and the noise schedule's 1000 ``alphas_cumprod``, ~21 kB). Clients are asyncio tasks
in this process, each on its own keep-alive connection; the two endpoints are
hammered in alternating rounds so that machine noise hits both alike. The clients speak
minimal HTTP/1.1 over asyncio streams (no HTTP library), so the server, not the load
generator, is what saturates. Prints a markdown table:
requests per second, p50/p99 latency as the client sees it, the server process's CPU time
per request (from /proc: what the endpoint costs, whatever else the machine is doing), and
the throughput ratio to the no-op. The app runs with its default settings, among them
``LD3_ACTIVE_CACHE_S=1``: the resolved active version id is reused for a second, so most
requests touch no database (without it, PostgreSQL's round trip held the schedule route to
~50% of the no-op on this machine).

    python benchmarks/serve_load.py > benchmarks/results/serve_load_sqlite.md
    python benchmarks/serve_load.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/ld3_bench \
        > benchmarks/results/serve_load_postgres.md     # the database must exist (createdb ld3_bench)
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: api/ and registry/ import from here
SCHEDULE_PATH = "/schedules/ddpm-digits/unipc/5"


def bench_app():
    """The app under test plus the no-op endpoint (uvicorn ``--factory`` target)."""
    from api.main import create_app

    app = create_app(queue=_NoQueue())

    @app.get("/noop", include_in_schema=False)
    async def noop() -> dict:
        return {}

    return app


class _NoQueue:
    def enqueue(self, job_id: str) -> None:  # the benchmark submits no jobs
        raise RuntimeError("the load benchmark submits no jobs")


def _version(nfe: int = 5):
    """One VP-discrete schedule version for ddpm-digits (DDPM linear betas), as a worker stores it."""
    from registry.schemas import ScheduleVersionCreate

    ac, prod = [], 1.0
    for i in range(1000):
        prod *= 1.0 - (1e-4 + (0.02 - 1e-4) * i / 999)
        ac.append(prod)
    t = [1.0 - 0.999 * (i / nfe) ** 0.8 for i in range(nfe + 1)]
    sig = [math.sqrt((1 - ac[max(0, round(x * 1000) - 1)]) / ac[max(0, round(x * 1000) - 1)]) for x in t]
    return ScheduleVersionCreate(
        model_key="ddpm-digits", solver="unipc", nfe=nfe, t_steps=t, t_model=t, time_space="vp_discrete t in [0.001, 1]",
        sigmas=sig, model_timesteps=[x * 1000 - 1 for x in t], schedule_config={"name": "vp_discrete", "alphas_cumprod": ac},
        source="ld3", model_sha256="c" * 64, config={}, seed=0, code_version="bench", val_loss=0.01,
        quality={"metric": "l2", "learned": {"mean": 0.01, "sem": 0.001}, "heuristics": {}},
    )


def prepare(database_url: str) -> str:
    """Migrate, load the catalog, store and promote one version; return a read-only API key."""
    from registry import keys, models
    from registry import schedules as sq
    from registry.db import make_engine, make_session_factory, session_scope, upgrade

    upgrade(database_url)
    engine = make_engine(database_url)
    with session_scope(make_session_factory(engine)) as s:
        models.sync_catalog(s, ROOT / "models" / "catalog.json")
        if sq.get_active(s, "ddpm-digits", "unipc", 5) is None:
            sq.promote(s, sq.create_version(s, _version()).id, actor="benchmark")
        _, key = keys.create_key(s, name="benchmark", scopes=["schedules:read"])
    engine.dispose()
    return key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _one_client(host: str, port: int, request: bytes, stop_at: float, latencies: list[float]) -> int:
    """One keep-alive connection sending ``request`` until ``stop_at``; returns the non-200 count.

    A minimal HTTP/1.1 client (pre-encoded request, Content-Length bodies): it costs the load
    generator far less CPU per request than an HTTP library, so the server is what is measured.
    """
    reader, writer = await asyncio.open_connection(host, port)
    errors = 0
    try:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - t0)
            errors += head[9:12] != b"200"
    finally:
        writer.close()
    return errors


async def _hammer(host: str, port: int, path: str, headers: dict[str, str], clients: int,
                  seconds: float) -> tuple[int, list[float], int, float]:
    """(requests, latencies, errors, wall seconds) of ``clients`` connections for ``seconds``."""
    request = (f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\n"
               + "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n").encode()
    latencies: list[float] = []
    t0 = time.perf_counter()
    errors = await asyncio.gather(*(_one_client(host, port, request, t0 + seconds, latencies) for _ in range(clients)))
    return len(latencies), latencies, sum(errors), time.perf_counter() - t0


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def run(args: argparse.Namespace) -> str:
    tmp = tempfile.mkdtemp(prefix="ld3-bench-")
    database_url = args.database_url or f"sqlite:///{tmp}/ld3.db"
    key = prepare(database_url)
    port = _free_port()
    env = {**os.environ, "LD3_DATABASE_URL": database_url, "LD3_AUTH_REQUIRED": "true", "PYTHONPATH": str(ROOT)}
    env.pop("LD3_BROKER_URL", None)
    env.pop("LD3_ADMIN_KEY", None)
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "benchmarks.serve_load:bench_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)
        auth = {"X-API-Key": key}
        targets = {"no-op `GET /noop`": ("/noop", {}),
                   f"`GET {SCHEDULE_PATH}?format=k-diffusion`": (f"{SCHEDULE_PATH}?format=k-diffusion", auth),
                   f"`GET {SCHEDULE_PATH}` (raw)": (SCHEDULE_PATH, auth)}
        sizes = {}
        for name, (path, headers) in targets.items():  # warm up (and check each answers 200)
            n, _, errors, _ = asyncio.run(_hammer("127.0.0.1", port, path, headers, args.clients, 1.0))
            if errors:
                raise RuntimeError(f"{path}: {errors} of {n} warm-up requests failed")
            sizes[name] = len(httpx.get(f"{base}{path}", headers=headers).content)
        results = {name: ([], 0.0, 0.0) for name in targets}
        for _ in range(args.rounds):
            for name, (path, headers) in targets.items():
                cpu0 = _cpu_s(server.pid)
                n, lat, errors, wall = asyncio.run(_hammer("127.0.0.1", port, path, headers, args.clients, args.seconds))
                cpu = _cpu_s(server.pid) - cpu0
                if errors:
                    raise RuntimeError(f"{path}: {errors} of {n} requests failed")
                prev, t, c = results[name]
                results[name] = (prev + lat, t + wall, c + cpu)
    finally:
        server.terminate()
        server.wait(10)
    rows = []
    noop_rps = None
    for name, (lat, wall, cpu) in results.items():
        rps = len(lat) / wall
        noop_rps = noop_rps or rps
        rows.append(f"| {name} | {sizes[name]:,} | {len(lat)} | {rps:,.0f} | {1e3 * statistics.median(lat):.2f} | "
                    f"{1e3 * _pct(lat, 0.99):.2f} | {1e6 * cpu / len(lat):.0f} | {rps / noop_rps:.0%} |")
    db = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    head = (f"{args.clients} concurrent clients, {args.rounds} x {args.seconds:g} s per endpoint (alternating), "
            f"one uvicorn worker, {db}, {os.cpu_count()} CPUs\n\n"
            "| endpoint | body (bytes) | requests | throughput (req/s) | p50 (ms) | p99 (ms) | server CPU per request (µs) | throughput vs no-op |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|")
    return head + "\n" + "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--database-url", help="default: a fresh SQLite file in a temporary folder")
    print(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
