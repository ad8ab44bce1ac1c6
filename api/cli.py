"""``ld3``: the service's command line (and the door to the library's).

    ld3 serve [--no-auth]                       # API + embedded runner (SQLite under var/) when no broker is set
    ld3 worker                                  # a Celery GPU worker (needs LD3_BROKER_URL)
    ld3 submit ddpm-digits unipc 5 --wait       # submit over HTTP, follow, print schedule and quality
    ld3 status [JOB]                            # one job, or the latest jobs
    ld3 schedule get ddpm-digits unipc 5 --format diffusers
    ld3 keys create --name CI --scopes schedules:read jobs:submit   # on the server: prints the key once
    ld3 keys list / ld3 keys revoke ID          # (straight on LD3_DATABASE_URL; admins only)
    ld3 quickstart                              # serve + submit + follow + print + stop, in one go
                                                #   (ddpm-digits, unipc, NFE 5, QUICKSTART_OPTIONS)
    ld3 optimize ... / ld3 models               # ld3core's local command (no service)
    ld3 evaluate ...                            # worker.evaluate (sample quality)

Client commands read the server URL from ``--url`` or ``LD3_URL`` (default http://127.0.0.1:8000)
and the key from ``--api-key`` or ``LD3_API_KEY``. Heavy modules (uvicorn, the app, torch) are
imported only by the commands that need them, so ``ld3 submit`` starts fast.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Sequence

DEFAULT_URL = "http://127.0.0.1:8000"
# NFE 4: where a learned schedule matters most. At UniPC NFE 5 the best heuristic on this model
# (time-quadratic) is within 2-3% of LD3 (the authors' code and ours, README "LD3 against the
# authors' loop"), a gap no honest guard can confirm on 50 test pairs.
QUICKSTART = {"model": "ddpm-digits", "solver": "unipc", "nfe": 4}
# The paper's recipe (LPIPS loss, decoupled times, soft teacher forcing, 3 starts) on fewer
# teacher pairs and 2 + 2 epochs (40 iterations): a few minutes on 2 CPU cores. -o overrides.
QUICKSTART_OPTIONS = {"n_train": 20, "n_val": 20, "n_test": 50, "phase2_epochs": 2}
DELEGATED = {"optimize": "ld3core", "models": "ld3core", "evaluate": "worker.evaluate"}


# Output.


def _fmt_times(xs: Sequence[float]) -> str:
    return ", ".join(f"{x:.6g}" for x in xs)


def format_quality(quality: dict[str, Any]) -> str:
    """The quality table of a schedule version: the learned schedule and every heuristic on the test pairs."""
    rows = [("ld3", quality.get("learned") or {})] + sorted(
        (quality.get("heuristics") or {}).items(), key=lambda kv: kv[1].get("mean") if kv[1].get("mean") is not None else float("inf"))
    metric = quality.get("metric", "loss")
    source = quality.get("source")
    lines = [f"{'schedule':<16}{'test ' + metric:>14}{'± sem':>12}"]
    for name, r in rows:
        mean, sem = r.get("mean"), r.get("sem")
        mark = " <- served" if name == source else ""
        lines.append(f"{name:<16}{mean if mean is None else format(mean, '.5g'):>14}{sem if sem is None else format(sem, '.3g'):>12}{mark}")
    d = quality.get("learned_minus_best")
    if d:
        lines.append(f"learned - best heuristic ({(quality.get('best_heuristic') or {}).get('name')}): "
                     f"{d.get('mean'):.4g} ± {d.get('sem'):.2g} (paired, n = {quality.get('n_test')})")
    return "\n".join(lines)


def format_schedule(sched: dict[str, Any]) -> str:
    """A ``GET /schedules`` response (format raw) for people: the times, the provenance, the quality."""
    p = sched["payload"]
    lines = [f"schedule {p['model']}/{p['solver']}/NFE {p['nfe']} version {p['version']} (source: {p['source']}; {p['time_space']})",
             f"  t_steps: {_fmt_times(p['t_steps'])}",
             f"  t_model: {_fmt_times(p['t_model'])}",
             f"  sigmas:  {_fmt_times(p['sigmas'])}",
             f"  model timesteps: {_fmt_times(p['model_timesteps'])}",
             f"  provenance: model sha256 {str(p.get('model_sha256'))[:12]}..., seed {p['seed']}, code {p['code_version']}, job {p.get('job_id')}"]
    if p.get("quality"):
        if p["quality"].get("message"):
            lines += ["", p["quality"]["message"]]
        lines += ["", format_quality(p["quality"])]
    return "\n".join(lines)


def format_job(job: dict[str, Any]) -> str:
    """One job's state for ``ld3 status JOB``."""
    pr = job["progress"]
    lines = [f"job {job['id']}: {job['model']}/{job['solver']}/NFE {job['nfe']}  state {job['state']}"
             + (" (cancel requested)" if job.get("cancel_requested") and job["state"] == "running" else "")]
    if job["state"] == "running" or pr.get("phase"):
        eta = f", ETA {pr['eta_s']:.0f} s" if pr.get("eta_s") is not None else ""
        best = f", best val {pr['loss_best']:.4g}" if pr.get("loss_best") is not None else ""
        lines.append(f"  phase {pr.get('phase')}: {pr['done']}/{pr['total']}{best}{eta}")
    if job.get("error"):
        lines.append(f"  error: {job['error']}")
    if job.get("schedule_version_id"):
        lines.append(f"  schedule version id {job['schedule_version_id']}")
    for e in (job.get("events") or [])[-8:]:
        lines.append(f"  {e['at']}  {e['kind']:<16} {e['message']}")
    return "\n".join(lines)


def format_jobs(page: dict[str, Any]) -> str:
    rows = page["data"]
    if not rows:
        return "no jobs"
    lines = [f"{'id':<34}{'model':<18}{'solver':<10}{'nfe':>4}  {'state':<10}{'progress':>12}  created"]
    for j in rows:
        pr = j["progress"]
        prog = f"{pr['phase'] or ''} {pr['done']}/{pr['total']}" if pr["total"] else ""
        lines.append(f"{j['id']:<34}{j['model']:<18}{j['solver']:<10}{j['nfe']:>4}  {j['state']:<10}{prog:>12}  {j['created_at'][:19]}")
    return "\n".join(lines)


class ProgressBar:
    """The job's phases (``ld3core.progress.PhaseProgress``), fed with the job as the client polls it."""

    def __init__(self, enabled: bool = True, *, tty: bool | None = None) -> None:
        from ld3core.progress import PhaseProgress

        self.enabled, self.state = enabled, None
        self.progress = PhaseProgress(tty=tty)

    def __call__(self, job: dict[str, Any]) -> None:
        if not self.enabled:
            return
        pr = job["progress"]
        if job["state"] != self.state:
            # A phase seen running is complete once the job succeeds; a failed or cancelled one stays where it was.
            self.close(completed=job["state"] == "succeeded")
            self.state = job["state"]
            print(f"job {job['id']}: {job['state']}", file=sys.stderr)
        if job["state"] != "running" or not pr.get("phase"):
            return
        post = {}
        if pr.get("loss_best") is not None:
            post["best"] = f"{pr['loss_best']:.4g}"
        if pr.get("eta_s") is not None:
            post["eta"] = f"{pr['eta_s']:.0f}s"
        # A new phase closes the previous one as complete: it finished between two polls.
        self.progress.update(pr["phase"], pr["done"], pr["total"], post)

    @property
    def bar(self):
        return self.progress.bar

    def close(self, completed: bool = False) -> None:
        self.progress.close(completed)


# Client commands.


def _client(args: argparse.Namespace):
    from .client import Client

    return Client(args.url, args.api_key)


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _options(args: argparse.Namespace) -> dict[str, Any]:
    opts: dict[str, Any] = {}
    if args.options_file:
        with open(args.options_file) as f:
            opts.update(json.load(f))
    for item in args.option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SystemExit(f"ld3 submit: error: --option {item!r}: expected KEY=VALUE, e.g. -o n_train=20")
        opts[key.strip()] = _option_value(value)
    return opts


def follow(client, job_id: str, *, quiet: bool = False) -> dict[str, Any]:
    """Wait for the job with a progress bar; print the schedule and its quality table (or the error)."""
    bar = ProgressBar(enabled=not quiet)
    try:
        job = client.wait(job_id, on_update=bar)
    finally:
        bar.close()
    if job["state"] != "succeeded":
        print(f"job {job_id} {job['state']}" + (f": {job['error']}" if job.get("error") else ""), file=sys.stderr)
        return job
    sched = client.schedule(job["model"], job["solver"], job["nfe"], guidance=job["options"].get("guidance"))
    print(format_schedule(sched))
    timings = (job.get("result") or {}).get("timings")
    if timings:
        print("\ntime: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f}s" for k, v in timings.items() if v is not None))
    return job


def cmd_submit(args: argparse.Namespace) -> int:
    with _client(args) as c:
        job = c.submit(args.model, args.solver, args.nfe, options=_options(args), idempotency_key=args.idempotency_key)
        print(job["id"], flush=True)
        if job["state"] != "queued" or job.get("attempts"):
            print(f"(existing job, state {job['state']})", file=sys.stderr)
        if not args.wait:
            return 0
        job = follow(c, job["id"], quiet=args.quiet)
    return 0 if job["state"] == "succeeded" else 1


def cmd_status(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.job:
            job = c.get_job(args.job)
            print(json.dumps(job, indent=1) if args.json else format_job(job))
        else:
            page = c.list_jobs(state=args.state, model=args.model, limit=args.limit)
            print(json.dumps(page, indent=1) if args.json else format_jobs(page))
    return 0


def cmd_cancel(args: argparse.Namespace) -> int:
    with _client(args) as c:
        print(format_job(c.cancel(args.job)))
    return 0


def cmd_schedule(args: argparse.Namespace) -> int:
    with _client(args) as c:
        if args.action == "get":
            out = c.schedule(args.model, args.solver, args.nfe, format=args.format, version=args.version, guidance=args.guidance)
            if args.json or args.format != "raw":
                print(json.dumps(out, indent=1))
            else:
                print(format_schedule(out))
        elif args.action == "versions":
            for v in c.schedule_versions(args.model, args.solver, args.nfe, guidance=args.guidance):
                mark = "  <- active" if v["active"] else ""
                print(f"version {v['version']:>3}  id {v['id']:>5}  {v['created_at'][:19]}  source {v['source']:<14} val {v['val_loss']}{mark}")
        else:
            v = c.promote(args.model, args.solver, args.nfe, args.version, guidance=args.guidance)
            print(f"active: version {v['version']} of {v['model']}/{v['solver']}/{v['nfe']}")
    return 0


# Server commands.


def _serve_settings(args: argparse.Namespace):
    from registry.settings import Settings

    overrides: dict[str, Any] = {}
    if args.no_auth:
        overrides["auth_required"] = False
    if args.database_url:
        overrides["database_url"] = args.database_url
    return Settings(**overrides)


def prepare_database(settings) -> None:
    """Migrate the database and load the catalog file into it (embedded start, ``ld3 migrate``)."""
    from registry import models as model_q
    from registry.db import make_engine, make_session_factory, session_scope, upgrade

    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as s:
            model_q.sync_catalog(s, settings.catalog_file)
    finally:
        engine.dispose()


def cmd_migrate(args: argparse.Namespace) -> int:
    """Distributed mode's one-shot set-up: migrations, then the model catalog file into the database."""
    import logging

    from registry.settings import Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = Settings(**({"database_url": args.database_url} if args.database_url else {}))
    if problem := settings.catalog_problem():
        print(f"ld3 migrate: error: {problem}", file=sys.stderr)
        return 1
    prepare_database(settings)
    print(f"database {settings.database_url} migrated; catalog {settings.catalog_file} loaded", flush=True)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    import logging

    import uvicorn

    from .main import create_app

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = _serve_settings(args)
    if settings.embedded or args.migrate:
        if problem := settings.catalog_problem():
            print(f"ld3 serve: error: {problem}", file=sys.stderr)
            return 1
        prepare_database(settings)
    app = create_app(settings)
    url = f"http://{args.host}:{args.port}"
    mode = "embedded runner (no broker)" if settings.embedded else f"Celery broker {settings.broker_url}"
    print(f"LD3 service at {url}  (docs {url}/docs; database {settings.database_url}; {mode})", flush=True)
    if settings.auth_required and not settings.admin_key:
        print("note: authentication is on and no LD3_ADMIN_KEY is set: only keys already in the database work "
              "(use --no-auth for a local service)", file=sys.stderr, flush=True)
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def format_keys(keys: list[dict[str, Any]]) -> str:
    """``ld3 keys list``: one line per key (no hash: only the display prefix is kept in the clear)."""
    lines = [f"{'id':>4}  {'name':<24} {'prefix':<9} {'scopes':<36} {'created':<19}  revoked"]
    for k in keys:
        revoked = k["revoked_at"][:19] if k["revoked_at"] else "-"
        lines.append(f"{k['id']:>4}  {k['name']:<24} {k['prefix']:<9} {' '.join(k['scopes']):<36} {k['created_at'][:19]}  {revoked}")
    return "\n".join(lines)


def _key_id(text: str) -> int:
    """An API key id as argparse reads it: a positive 32-bit integer (the column's range)."""
    value = int(text) if text.strip().lstrip("+-").isdigit() else 0
    if not 1 <= value <= 2**31 - 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a key id (an integer 1..{2**31 - 1}, from `ld3 keys list`)")
    return value


def _keys_action(s, args: argparse.Namespace) -> tuple[list[dict[str, Any]], str | None]:
    """Run ``ld3 keys ACTION`` in session ``s``: (the keys it touched, as GET /keys shows them; the plaintext of a new one)."""
    from registry import keys as key_q
    from registry.schemas import ApiKeyPublic

    def public(row) -> dict[str, Any]:
        return ApiKeyPublic.from_row(row).model_dump(mode="json")

    if args.action == "create":
        row, plaintext = key_q.create_key(s, name=args.name, scopes=args.scopes)
        return [public(row)], plaintext
    if args.action == "list":
        return [public(r) for r in key_q.list_keys(s)], None
    was = key_q.revoke_key(s, args.id)
    if was is None:
        raise LookupError(f"id: no API key has id {args.id}")
    return [public(was)], None


def cmd_keys(args: argparse.Namespace) -> int:
    """Create, list or revoke API keys straight on the database of the settings (run it on the server)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from registry.db import make_engine, make_session_factory, session_scope
    from registry.settings import Settings

    settings = Settings(**({"database_url": args.database_url} if args.database_url else {}))
    where = make_url(settings.database_url).render_as_string(hide_password=True)
    engine = make_engine(settings.database_url)
    try:
        with session_scope(make_session_factory(engine)) as s:
            touched, plaintext = _keys_action(s, args)
    except (ValueError, LookupError) as e:
        print(f"ld3 keys {args.action}: error: {e}", file=sys.stderr)
        return 1
    except SQLAlchemyError as e:
        print(f"ld3 keys {args.action}: error: database {where}: {e.__class__.__name__}: {getattr(e, 'orig', None) or e} "
              "(is it migrated? `ld3 serve` migrates an embedded database; with a broker use `ld3 serve --migrate`)",
              file=sys.stderr)
        return 1
    finally:
        engine.dispose()
    if args.action == "create":
        k = touched[0]
        print(plaintext, flush=True)
        print(f"key {k['id']} {k['name']!r} ({k['prefix']}...) with scopes {', '.join(k['scopes'])} in {where}: "
              "the key is shown this once, store it now (only its hash is kept)", file=sys.stderr)
    elif args.action == "list":
        print(json.dumps(touched, indent=1) if args.json else format_keys(touched))
    else:
        from .auth import KEY_CACHE_TTL_S

        k = touched[0]
        print(f"key {k['id']} {k['name']!r} ({k['prefix']}...) revoked at {k['revoked_at'][:19]} UTC")
        print(f"note: a running API process that verified this key in the last {KEY_CACHE_TTL_S:g} s accepts it until "
              "that cache entry expires (DELETE /keys/ID through the API drops it at once in that process)", file=sys.stderr)
    return 0


def cmd_worker(args: argparse.Namespace, extra: list[str]) -> int:
    from registry.settings import Settings

    if not Settings().broker_url:
        print("ld3 worker: error: LD3_BROKER_URL is not set (e.g. redis://127.0.0.1:6379/0); "
              "without a broker `ld3 serve` runs jobs itself", file=sys.stderr)
        return 2
    cmd = [sys.executable, "-m", "celery", "-A", "worker.celery_app", "worker", "-Q", "gpu", "--pool", "solo",
           "--concurrency", "1", "--prefetch-multiplier", "1", "-n", args.name, "-l", args.loglevel, *extra]
    os.execv(sys.executable, cmd)
    return 0  # not reached


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
    from .client import Client

    port = _free_port(args.port)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("LD3_BROKER_URL", None)  # embedded: the service runs the job itself
    if args.database_url:
        env["LD3_DATABASE_URL"] = args.database_url
    cmd = [sys.executable, "-m", "api.cli", "serve", "--no-auth", "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning"]
    print(f"starting the embedded service on http://127.0.0.1:{port} ...", file=sys.stderr, flush=True)
    proc = subprocess.Popen(cmd, env=env, stdout=sys.stderr if args.verbose else subprocess.DEVNULL,
                            stderr=sys.stderr if args.verbose else subprocess.DEVNULL)
    try:
        with Client(f"http://127.0.0.1:{port}") as c:
            _wait_ready(c, proc)
            opts = {**QUICKSTART_OPTIONS, **_options(args)}
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


# Parser.


def _add_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("LD3_URL", DEFAULT_URL), help="service URL (env LD3_URL)")
    p.add_argument("--api-key", default=os.environ.get("LD3_API_KEY"), help="API key (env LD3_API_KEY)")


def _add_option_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="an LD3 option (JSON value), e.g. -o n_train=20 -o loss=l2; repeatable")
    p.add_argument("--options-file", help="a JSON file of LD3 options")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ld3", description="Learn, store and serve diffusion-ODE step schedules (LD3).")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("serve", help="run the API (and, with no broker configured, the embedded runner)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--no-auth", action="store_true", help="every caller gets every scope (local use only)")
    s.add_argument("--database-url", help="overrides LD3_DATABASE_URL")
    s.add_argument("--migrate", action="store_true",
                   help="with a broker: run the migrations and load the catalog first (embedded mode always does)")
    s.add_argument("--log-level", default="info")

    mg = sub.add_parser("migrate", help="migrate the database and load the model catalog (distributed mode's set-up)")
    mg.add_argument("--database-url", help="overrides LD3_DATABASE_URL")

    w = sub.add_parser("worker", help="run a Celery GPU worker (extra arguments go to celery)")
    w.add_argument("--name", default="ld3-gpu@%h", help="Celery node name")
    w.add_argument("--loglevel", default="info")

    k = sub.add_parser("keys", help="create, list or revoke API keys (on the server: straight on the database)")
    ksub = k.add_subparsers(dest="action", required=True)
    kc = ksub.add_parser("create", help="a new key; prints its plaintext (shown this once)")
    kc.add_argument("--name", required=True, help="who or what the key is for")
    kc.add_argument("--scopes", nargs="+", required=True, metavar="SCOPE",
                    help="one or more of: schedules:read jobs:submit admin")
    kl = ksub.add_parser("list", help="every key (revoked ones too); no hashes")
    kl.add_argument("--json", action="store_true")
    kr = ksub.add_parser("revoke", help="revoke key ID (from `ld3 keys list`)")
    kr.add_argument("id", type=_key_id)
    for a in (kc, kl, kr):
        a.add_argument("--database-url", help="overrides LD3_DATABASE_URL")

    sm = sub.add_parser("submit", help="submit a job over HTTP; prints its id")
    sm.add_argument("model")
    sm.add_argument("solver")
    sm.add_argument("nfe", type=int)
    _add_option_flags(sm)
    sm.add_argument("--idempotency-key", help="retries with the same key return the same job")
    sm.add_argument("--wait", action="store_true", help="follow the job to its end, then print the schedule and quality")
    sm.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_client_flags(sm)

    st = sub.add_parser("status", help="one job's state, or the latest jobs")
    st.add_argument("job", nargs="?")
    st.add_argument("--state", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    st.add_argument("--model")
    st.add_argument("--limit", type=int, default=20)
    st.add_argument("--json", action="store_true")
    _add_client_flags(st)

    c = sub.add_parser("cancel", help="cancel a job")
    c.add_argument("job")
    _add_client_flags(c)

    sc = sub.add_parser("schedule", help="fetch, list or promote schedule versions")
    ssub = sc.add_subparsers(dest="action", required=True)
    for name, help_ in (("get", "the active (or --version) schedule"), ("versions", "every version"),
                        ("promote", "serve VERSION (admin; rollback = promote an older one)")):
        a = ssub.add_parser(name, help=help_)
        a.add_argument("model")
        a.add_argument("solver")
        a.add_argument("nfe", type=int)
        if name == "promote":
            a.add_argument("version", type=int)
        if name == "get":
            a.add_argument("--format", default="raw", choices=("raw", "diffusers", "k-diffusion", "comfyui"))
            a.add_argument("--version", type=int)
            a.add_argument("--json", action="store_true", help="print the raw response")
        a.add_argument("--guidance", type=float)
        _add_client_flags(a)

    q = sub.add_parser("quickstart", help="start the embedded service, learn a demo schedule over HTTP, print it, stop",
                       description="Starts `ld3 serve --no-auth` (embedded, no broker) in a subprocess, submits "
                                   f"{QUICKSTART['model']} / {QUICKSTART['solver']} / NFE {QUICKSTART['nfe']} with options "
                                   f"{QUICKSTART_OPTIONS} over HTTP, follows it, prints the schedule and its quality "
                                   "table, and stops the service.")
    q.add_argument("--model", default=QUICKSTART["model"])
    q.add_argument("--solver", default=QUICKSTART["solver"])
    q.add_argument("--nfe", type=int, default=QUICKSTART["nfe"])
    _add_option_flags(q)
    q.add_argument("--port", type=int, default=8000, help="preferred port (a free one if taken)")
    q.add_argument("--database-url", help="default: LD3_DATABASE_URL or sqlite:///var/ld3.db")
    q.add_argument("--quiet", action="store_true", help="no progress bar")
    q.add_argument("--verbose", action="store_true", help="show the service's log")

    for name, help_ in (("optimize", "run one LD3 job locally on a built-in model (ld3core)"),
                        ("models", "list ld3core's built-in models"),
                        ("evaluate", "sample quality of a schedule and every heuristic (worker.evaluate)")):
        sub.add_parser(name, help=help_, add_help=False)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("optimize", "models"):
        from ld3core.cli import main as core_main

        return core_main(argv)
    if argv and argv[0] == "evaluate":
        from worker.evaluate import main as evaluate_main

        return evaluate_main(argv[1:])
    args, extra = parser().parse_known_args(argv)
    if extra and args.command != "worker":
        parser().error(f"unrecognized arguments: {' '.join(extra)}")
    import httpx

    from .client import ApiError

    try:
        if args.command == "worker":
            return cmd_worker(args, extra)
        return {"serve": cmd_serve, "migrate": cmd_migrate, "submit": cmd_submit, "status": cmd_status, "cancel": cmd_cancel,
                "schedule": cmd_schedule, "quickstart": cmd_quickstart, "keys": cmd_keys}[args.command](args)
    except ApiError as e:
        print(f"ld3 {args.command}: error: {e}", file=sys.stderr)
        return 1
    except httpx.TransportError as e:
        url = getattr(args, "url", DEFAULT_URL)
        print(f"ld3 {args.command}: error: cannot reach the service at {url} ({type(e).__name__}: {e}); "
              "start it with `ld3 serve`, or point --url / LD3_URL at it", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
