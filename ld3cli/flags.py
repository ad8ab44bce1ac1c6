"""Flags shared by several commands: where the service is, and the LD3 options of a job."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8000"


def add_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--url", default=os.environ.get("LD3_URL", DEFAULT_URL), help="service URL (env LD3_URL)")
    p.add_argument("--api-key", default=os.environ.get("LD3_API_KEY"), help="API key (env LD3_API_KEY)")


def add_option_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--option", action="append", metavar="KEY=VALUE",
                   help="an LD3 option (JSON value), e.g. -o n_train=20 -o loss=l2; repeatable")
    p.add_argument("--options-file", help="a JSON file of LD3 options")


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def options(args: argparse.Namespace) -> dict[str, Any]:
    """The job options of ``--options-file`` and ``-o KEY=VALUE`` (the flags win)."""
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
