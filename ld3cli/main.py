"""``ld3``: the argparse tree of every subcommand, and the one place that turns errors into exit statuses.

    ld3 serve [--no-auth]                       # API + embedded runner (SQLite under var/) when no broker is set
    ld3 migrate                                 # distributed mode's set-up: migrations, then the model catalog
    ld3 worker                                  # a Celery GPU worker (needs LD3_BROKER_URL)
    ld3 keys create --name CI --scopes schedules:read jobs:submit   # on the server: prints the key once
    ld3 keys list / ld3 keys revoke ID          # (straight on LD3_DATABASE_URL; admins only)
    ld3 submit ddpm-digits unipc 5 --wait       # submit over HTTP, follow, print schedule and quality
    ld3 status [JOB] / ld3 cancel JOB           # one job, or the latest jobs
    ld3 schedule get ddpm-digits unipc 5 --format diffusers / versions / promote
    ld3 quickstart                              # serve + submit + follow + print + stop, in one go
    ld3 optimize ... / ld3 models               # one LD3 job in-process on a built-in model (ld3core, no service)
    ld3 evaluate ...                            # sample quality of a schedule and every heuristic (worker.evaluate)

Each subcommand's module adds its parser and sets ``run``, the function that takes the parsed
arguments. Client commands read the server URL from ``--url`` or ``LD3_URL`` and the key from
``--api-key`` or ``LD3_API_KEY``. Heavy modules (uvicorn, the app, torch) are imported only by
the commands that need them, so ``ld3 submit`` starts fast.
"""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import evaluate, keys, optimize, quickstart, remote, server
from .flags import DEFAULT_URL


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ld3", description="Learn, store and serve diffusion-ODE step schedules (LD3).")
    sub = p.add_subparsers(dest="command", required=True)
    for module in (server, keys, remote, quickstart, optimize, evaluate):
        module.add_parsers(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args, extra = p.parse_known_args(argv)
    if extra and not getattr(args, "takes_extra", False):
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    args.extra = extra
    import httpx

    from client.http_client import ApiError

    try:
        return args.run(args)
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
