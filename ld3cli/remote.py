"""The commands that talk to a running service over HTTP: submit, status, cancel, schedule."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from registry.exports import FORMATS

from .flags import add_client_flags, add_option_flags, options
from .output import format_job, format_jobs, format_schedule
from .progress import ProgressBar


def _client(args: argparse.Namespace):
    from client.http_client import Client

    return Client(args.url, args.api_key)


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
        job = c.submit(args.model, args.solver, args.nfe, options=options(args), idempotency_key=args.idempotency_key)
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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    sm = sub.add_parser("submit", help="submit a job over HTTP; prints its id")
    sm.add_argument("model")
    sm.add_argument("solver")
    sm.add_argument("nfe", type=int)
    add_option_flags(sm)
    sm.add_argument("--idempotency-key", help="retries with the same key return the same job")
    sm.add_argument("--wait", action="store_true", help="follow the job to its end, then print the schedule and quality")
    sm.add_argument("--quiet", action="store_true", help="no progress bar")
    add_client_flags(sm)
    sm.set_defaults(run=cmd_submit)

    st = sub.add_parser("status", help="one job's state, or the latest jobs")
    st.add_argument("job", nargs="?")
    st.add_argument("--state", choices=("queued", "running", "succeeded", "failed", "cancelled"))
    st.add_argument("--model")
    st.add_argument("--limit", type=int, default=20)
    st.add_argument("--json", action="store_true")
    add_client_flags(st)
    st.set_defaults(run=cmd_status)

    c = sub.add_parser("cancel", help="cancel a job")
    c.add_argument("job")
    add_client_flags(c)
    c.set_defaults(run=cmd_cancel)

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
            a.add_argument("--format", default="raw", choices=FORMATS)
            a.add_argument("--version", type=int)
            a.add_argument("--json", action="store_true", help="print the raw response")
        a.add_argument("--guidance", type=float)
        add_client_flags(a)
    sc.set_defaults(run=cmd_schedule)
