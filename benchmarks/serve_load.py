"""Throughput and latency of ``GET /schedules/...`` under concurrent load, next to a no-op endpoint.

    python benchmarks/serve_load.py                       # SQLite, 8 clients, 3 rounds of 5 s per endpoint
    python benchmarks/serve_load.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/ld3_bench
    python benchmarks/serve_load.py --with-job            # the same while an LD3 job trains in the server process
    python benchmarks/serve_load.py --oversized-flood 50000000   # and a row under a flood of 50 MB POSTs

One uvicorn process (one worker) serves the real app (``api.main.create_app``, API-key auth
on, metrics middleware on) plus ``GET /noop`` (an ``async def`` returning ``{}``, no auth) in
the same process. The database holds one schedule version, active. The schedule is fetched
as k-diffusion sigmas (what a sampler polls, ~600 bytes) and raw (every stored field with the
provenance and the noise schedule's 1000 ``alphas_cumprod``, ~21 kB). Clients are asyncio tasks
in this process, each on its own keep-alive connection; the two endpoints are
hammered in alternating rounds so that machine noise hits both alike. The clients speak
minimal HTTP/1.1 over asyncio streams (no HTTP library), so the server, not the load
generator, is what saturates. Prints a markdown table:
requests per second, errors (answers other than 2xx and 304, and failed connections), p50/p99
latency as the client sees it, the server process's CPU time
per request (from /proc: what the endpoint costs, whatever else the machine is doing), and
the throughput ratio to the no-op. The app runs with its default settings, among them
``LD3_ACTIVE_CACHE_S=1``: the resolved active version id is reused for a second, so most
requests touch no database (without it, PostgreSQL's round trip held the schedule route to
~50% of the no-op on this machine).

``--with-job``: the server runs as ``ld3 serve`` does without a broker, its embedded runner in
the same process. Before the rounds one LD3 job (``JOB``: ddpm-digits, UniPC, NFE 4, small
data and many epochs) is submitted through the API and the rounds start once it trains; after
them its state and progress are printed, then it is cancelled. This is the one-GPU-box
deployment: requests and training share the process (and the GIL).

``--oversized-flood N``: one more row, the k-diffusion schedule measured while ``FLOOD_CLIENTS``
unauthenticated clients each POST /jobs with ``Content-Length: N`` and stream junk until the
server closes, again and again. A line after the table gives the floods sent, how many got
the 413 (``LD3_MAX_BODY_BYTES``), the median time from connecting to the 413, the schedule's
req/s and p99 with and without the flood, and the server's peak RSS (VmHWM, reset before
each round through /proc/<pid>/clear_refs) in either kind of round.

    python benchmarks/serve_load.py > benchmarks/results/serve_load_sqlite.md
    python benchmarks/serve_load.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/ld3_bench \
        > benchmarks/results/serve_load_postgres.md     # the database must exist (createdb ld3_bench)
    python benchmarks/serve_load.py --with-job > benchmarks/results/serve_load_with_job.md
    python benchmarks/serve_load.py --oversized-flood 50000000 > benchmarks/results/serve_load_flood.md
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
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: api/ and registry/ import from here
SCHEDULE_PATH = "/schedules/ddpm-digits/unipc/5"
# --with-job: few pairs (a short teacher phase) and many epochs, so that it trains through the rounds.
JOB = {"model": "ddpm-digits", "solver": "unipc", "nfe": 4,
       "options": {"n_train": 20, "n_val": 20, "n_test": 20, "phase1_epochs": 1, "phase2_epochs": 200, "loss": "l2"}}
JOB_START_TIMEOUT_S = 1800.0  # the teacher phase, on a busy CPU
JOB_CANCEL_TIMEOUT_S = 120.0  # a running job stops at its next iteration
FLOOD_CLIENTS = 4
FLOOD_CHUNK = b"x" * 65536
FLOOD_ANSWER_TIMEOUT_S = 10.0  # a flood connection that gets no answer and no close within this counts as not refused


def _with_noop(app):
    @app.get("/noop", include_in_schema=False)
    async def noop() -> dict:
        return {}

    return app


def bench_app():
    """The app under test plus the no-op endpoint (uvicorn ``--factory`` target)."""
    from api.main import create_app

    return _with_noop(create_app(queue=_NoQueue()))


def bench_app_with_runner():
    """The same with the embedded runner (no broker in the environment), as ``ld3 serve`` runs it."""
    from api.main import create_app

    return _with_noop(create_app())


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


def prepare(database_url: str) -> tuple[str, str]:
    """Migrate, load the catalog, store and promote one version; return API keys (read-only, read + submit)."""
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
        _, job_key = keys.create_key(s, name="benchmark jobs", scopes=["schedules:read", "jobs:submit"])
    engine.dispose()
    return key, job_key


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answered_ok(head: bytes) -> bool:
    """Whether an HTTP/1.1 response head is a success: 2xx, or 304 (not modified)."""
    status = head[9:12]
    return status[:1] == b"2" or status == b"304"


async def _one_client(host: str, port: int, request: bytes, stop_at: float, latencies: list[float]) -> int:
    """One keep-alive connection sending ``request`` until ``stop_at``; returns the error count
    (answers other than 2xx/304, and connections that failed: it connects again).

    A minimal HTTP/1.1 client (pre-encoded request, Content-Length bodies): it costs the load
    generator far less CPU per request than an HTTP library, so the server is what is measured.
    """
    errors = 0
    while time.perf_counter() < stop_at:
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            errors += 1
            await asyncio.sleep(0.1)  # a refused connection returns at once: do not spin
            continue
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
                errors += not answered_ok(head)
        except (OSError, asyncio.IncompleteReadError):
            errors += 1
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


async def _stream_junk(writer: asyncio.StreamWriter, n_bytes: int) -> None:
    sent = 0
    try:
        while sent < n_bytes:
            chunk = FLOOD_CHUNK[: n_bytes - sent]
            writer.write(chunk)
            await writer.drain()
            sent += len(chunk)
    except OSError:
        pass  # the server closed the connection: what a flood expects


async def _flood_client(host: str, port: int, n_bytes: int, stop_at: float, floods: list[dict]) -> None:
    """Until ``stop_at``: connect, POST /jobs declaring ``n_bytes`` (no key), stream junk while
    waiting for the answer; one record per connection: status (None: none read), seconds from
    connecting to the answer, whether the server then closed the connection."""
    head = (f"POST /jobs HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {n_bytes}\r\n\r\n").encode()
    while time.perf_counter() < stop_at:
        t0 = time.perf_counter()
        record = {"status": None, "seconds": None, "closed": False}
        try:
            reader, writer = await asyncio.open_connection(host, port)
        except OSError:
            floods.append(record)
            await asyncio.sleep(0.1)
            continue
        writer.write(head)
        sender = asyncio.ensure_future(_stream_junk(writer, n_bytes))
        try:
            answer = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), FLOOD_ANSWER_TIMEOUT_S)
            record.update(status=int(answer[9:12]), seconds=time.perf_counter() - t0)
            await asyncio.wait_for(reader.read(), FLOOD_ANSWER_TIMEOUT_S)  # the body, then the server's close
            record["closed"] = True
        except (ConnectionError, asyncio.IncompleteReadError):
            record["closed"] = True  # a reset (the server closed with unread junk) or a broken pipe, or EOF
        except (OSError, TimeoutError):
            pass
        finally:
            sender.cancel()
            writer.close()
        floods.append(record)


async def _measure(host: str, port: int, path: str, headers: dict[str, str], clients: int, seconds: float,
                   flood_bytes: int | None = None) -> tuple[int, list[float], int, float, list[dict]]:
    """``_hammer``'s result plus the flood records, with ``FLOOD_CLIENTS`` flooding alongside when ``flood_bytes``."""
    floods: list[dict] = []
    stop_at = time.perf_counter() + seconds
    flooders = [_flood_client(host, port, flood_bytes, stop_at, floods) for _ in range(FLOOD_CLIENTS if flood_bytes else 0)]
    hammered, *_ = await asyncio.gather(_hammer(host, port, path, headers, clients, seconds), *flooders)
    return (*hammered, floods)


def summarize_floods(floods: list[dict]) -> dict:
    """Floods sent; how many got a 413, and the median seconds to it (None without one); how many the
    server closed before an answer could be read (``cut_off``); how many it closed in all."""
    refused = [f["seconds"] for f in floods if f["status"] == 413]
    return {"sent": len(floods), "refused": len(refused), "median_s": statistics.median(refused) if refused else None,
            "cut_off": sum(f["closed"] and f["status"] is None for f in floods), "closed": sum(f["closed"] for f in floods)}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_kib(status_text: str) -> int:
    """``VmHWM`` (peak resident set, KiB) from the text of /proc/<pid>/status."""
    for line in status_text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise ValueError("no VmHWM line")


def _reset_peak_rss(pid: int) -> bool:
    """Reset ``pid``'s VmHWM to its current RSS (Linux 4.0+); False where that is not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))]


def _job_progress(job: dict) -> str:
    pr = job["progress"]
    best = f", best val loss {pr['loss_best']:.4g}" if pr.get("loss_best") is not None else ""
    return f"{job['state']}, phase {pr['phase']} {pr['done']}/{pr['total']}{best}"


@contextmanager
def _training_job(http, job_key: str) -> Iterator[dict]:
    """Submit ``JOB``, wait until it trains and yield ``{"start": the job then}``; on the way out
    cancel it (POST /jobs/{id}/cancel), wait for it to stop, and set ``"end"`` to the job then."""
    auth = {"X-API-Key": job_key}
    r = http.post("/jobs", json=JOB, headers=auth)
    if r.status_code != 201:
        raise RuntimeError(f"POST /jobs: {r.status_code} {r.text}")
    job_id = r.json()["id"]
    print(f"job {job_id} submitted; waiting for its training phase", file=sys.stderr, flush=True)
    record: dict = {}
    try:
        deadline = time.monotonic() + JOB_START_TIMEOUT_S
        while "start" not in record:
            job = http.get(f"/jobs/{job_id}", headers=auth).json()
            if job["state"] == "running" and job["progress"]["phase"] == "training":
                record["start"] = job
            elif job["state"] in ("succeeded", "failed", "cancelled"):
                raise RuntimeError(f"job {job_id} ended before the rounds: {job['state']} {job.get('error') or ''}")
            elif time.monotonic() > deadline:
                raise RuntimeError(f"job {job_id} was not training after {JOB_START_TIMEOUT_S:.0f} s")
            else:
                time.sleep(1.0)
        yield record
    finally:
        r = http.post(f"/jobs/{job_id}/cancel", headers=auth)
        job = r.json() if r.status_code == 200 else http.get(f"/jobs/{job_id}", headers=auth).json()
        deadline = time.monotonic() + JOB_CANCEL_TIMEOUT_S
        while job["state"] == "running" and time.monotonic() < deadline:
            time.sleep(0.5)
            job = http.get(f"/jobs/{job_id}", headers=auth).json()
        record["end"] = job


def run(args: argparse.Namespace) -> str:
    tmp = tempfile.mkdtemp(prefix="ld3-bench-")
    database_url = args.database_url or f"sqlite:///{tmp}/ld3.db"
    key, job_key = prepare(database_url)
    port = _free_port()
    env = {**os.environ, "LD3_DATABASE_URL": database_url, "LD3_AUTH_REQUIRED": "true", "PYTHONPATH": str(ROOT)}
    env.pop("LD3_BROKER_URL", None)
    env.pop("LD3_ADMIN_KEY", None)
    factory = "bench_app"
    if args.with_job:
        factory = "bench_app_with_runner"
        env["HF_HUB_OFFLINE"] = "1"  # as `ld3 quickstart`: the shipped model is on disk
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", f"benchmarks.serve_load:{factory}", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning", "--no-access-log"], cwd=ROOT, env=env)
    base = f"http://127.0.0.1:{port}"
    floods: list[dict] = []
    peaks: dict[str, int] = {}  # peak RSS (KiB) per endpoint, the largest over its rounds
    peak_reset = True
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
        schedule_name = f"`GET {SCHEDULE_PATH}?format=k-diffusion`"
        flood_name = f"{schedule_name} during the oversized-body flood"
        targets = {"no-op `GET /noop`": ("/noop", {}, None),
                   schedule_name: (f"{SCHEDULE_PATH}?format=k-diffusion", auth, None),
                   f"`GET {SCHEDULE_PATH}` (raw)": (SCHEDULE_PATH, auth, None)}
        if args.oversized_flood:
            targets[flood_name] = (f"{SCHEDULE_PATH}?format=k-diffusion", auth, args.oversized_flood)
        sizes = {}
        for name, (path, headers, _) in targets.items():  # warm up (and check each answers 200)
            n, _, errors, _ = asyncio.run(_hammer("127.0.0.1", port, path, headers, args.clients, 1.0))
            if errors:
                raise RuntimeError(f"{path}: {errors} of {n} warm-up requests failed")
            sizes[name] = len(httpx.get(f"{base}{path}", headers=headers).content)
        with httpx.Client(base_url=base, timeout=30) as http, ExitStack() as stack:
            job = stack.enter_context(_training_job(http, job_key)) if args.with_job else None
            t_start = time.monotonic()
            results = {name: ([], 0, 0.0, 0.0) for name in targets}
            for _ in range(args.rounds):
                for name, (path, headers, flood_bytes) in targets.items():
                    peak_reset = _reset_peak_rss(server.pid) and peak_reset
                    cpu0 = _cpu_s(server.pid)
                    n, lat, errors, wall, flooded = asyncio.run(
                        _measure("127.0.0.1", port, path, headers, args.clients, args.seconds, flood_bytes))
                    cpu = _cpu_s(server.pid) - cpu0
                    peaks[name] = max(peaks.get(name, 0), peak_rss_kib(Path(f"/proc/{server.pid}/status").read_text()))
                    floods += flooded
                    prev, e, t, c = results[name]
                    results[name] = (prev + lat, e + errors, t + wall, c + cpu)
            if job is not None:
                job["after"] = http.get(f"/jobs/{job['start']['id']}", headers={"X-API-Key": job_key}).json()
                job["rounds_s"] = time.monotonic() - t_start
    finally:
        server.terminate()
        try:
            server.wait(JOB_CANCEL_TIMEOUT_S if args.with_job else 10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    rows = []
    noop_rps = None
    for name, (lat, errors, wall, cpu) in results.items():
        rps = len(lat) / wall
        noop_rps = noop_rps or rps
        if not lat:  # every request failed
            rows.append(f"| {name} | {sizes[name]:,} | 0 | {errors} | 0 | - | - | - | 0% |")
            continue
        rows.append(f"| {name} | {sizes[name]:,} | {len(lat)} | {errors} | {rps:,.0f} | {1e3 * statistics.median(lat):.2f} | "
                    f"{1e3 * _pct(lat, 0.99):.2f} | {1e6 * cpu / len(lat):.0f} | {rps / noop_rps:.0%} |")
    db = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
    head = (f"{args.clients} concurrent clients, {args.rounds} x {args.seconds:g} s per endpoint (alternating), "
            f"one uvicorn worker, {db}, {os.cpu_count()} CPUs"
            + (", one LD3 job training in the server process" if args.with_job else "") + "\n\n"
            "| endpoint | body (bytes) | requests | errors | throughput (req/s) | p50 (ms) | p99 (ms) "
            "| server CPU per request (µs) | throughput vs no-op |\n"
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    out = head + "\n" + "\n".join(rows)
    if job is not None:
        out += "\n\n" + _job_lines(job)
    if args.oversized_flood:
        out += "\n\n" + _flood_line(args.oversized_flood, summarize_floods(floods), results[schedule_name], results[flood_name],
                                    peaks[schedule_name], peaks[flood_name], peak_reset)
    return out


def _job_lines(job: dict) -> str:
    """The job's state when the rounds began, after them, and after the cancel."""
    start, after = job["start"], job["after"]
    training = after["state"] == "running" and after["progress"]["phase"] == "training"
    lines = [f"LD3 job {start['id']} ({JOB['model']}, {JOB['solver']}, NFE {JOB['nfe']}, options {JOB['options']}), "
             f"in the server process (embedded runner, LD3_DEVICE={os.environ.get('LD3_DEVICE', 'auto')}):",
             f"- when the rounds began: {_job_progress(start)}",
             f"- after the rounds ({job['rounds_s']:.0f} s later): {_job_progress(after)}"
             + (f" ({after['progress']['done'] - start['progress']['done']} training iterations during the rounds)" if training else ""),
             f"- then cancelled (POST /jobs/{{id}}/cancel): {job['end']['state']}",
             "",
             "Progress is as the job last wrote it (at most every LD3_PROGRESS_EVERY_S, default 2 s). The server CPU per "
             "request counts the training's CPU too: job and API are one process."]
    if not training:
        lines.insert(3, "- **the job did not train through all the rounds**: the later rounds ran without it")
    return "\n".join(lines)


def _flood_line(n_bytes: int, s: dict, quiet: tuple, flooded: tuple, peak_quiet: int, peak_flooded: int, reset: bool) -> str:
    def rate_p99(result: tuple) -> str:
        lat, _, wall, _ = result
        return f"{len(lat) / wall:,.0f} req/s, p99 {1e3 * _pct(lat, 0.99):.2f} ms"

    median = "-" if s["median_s"] is None else f"{1e3 * s['median_s']:.2f} ms"
    peak = "peak RSS per round" if reset else "peak RSS since the server started (VmHWM could not be reset)"
    return (f"Oversized-body flood: {FLOOD_CLIENTS} unauthenticated clients, each POST /jobs with Content-Length {n_bytes:,} "
            f"and junk streamed until the server closes: {s['sent']} floods sent, {s['refused']} got the 413, "
            f"{s['cut_off']} had the connection closed (reset) before they could read an answer, "
            f"{s['closed']} closed by the server in all; median time from connecting to the 413 {median}. "
            f"Schedule (k-diffusion) {rate_p99(flooded)} during the flood, {rate_p99(quiet)} without it "
            "(the table's server CPU per request in the flood row includes the server's work on the flood). "
            f"Server {peak}: {peak_flooded / 1024:,.0f} MiB during the flood, {peak_quiet / 1024:,.0f} MiB without it.")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--database-url", help="default: a fresh SQLite file in a temporary folder")
    p.add_argument("--with-job", action="store_true",
                   help="run the embedded runner in the server and measure while one LD3 job trains (then cancel it)")
    p.add_argument("--oversized-flood", type=int, metavar="BYTES",
                   help=f"add the schedule measured while {FLOOD_CLIENTS} clients POST bodies of this declared size")
    print(run(p.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
