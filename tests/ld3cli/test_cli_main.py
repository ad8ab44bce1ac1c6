"""The ``ld3`` argparse tree and its errors: every subcommand is there, a service that is not running is one line, the import is light."""

from __future__ import annotations

import subprocess
import sys

from ld3cli.main import main, parser


def test_a_service_that_is_not_running_is_one_line_naming_the_url(capsys):
    import socket

    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    assert main(["status", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot reach the service at {url}" in err and "LD3_URL" in err


def test_optimize_and_models_go_to_ld3core(capsys):
    assert main(["models"]) == 0
    assert "gmm2d-edm" in capsys.readouterr().out.split()
    assert {"serve", "worker", "submit", "status", "schedule", "keys", "quickstart", "optimize", "evaluate"} <= set(
        parser()._subparsers._group_actions[0].choices)


def test_cli_import_is_light():
    code = "import sys, ld3cli.main; assert not [m for m in ('torch', 'uvicorn', 'sqlalchemy', 'fastapi') if m in sys.modules]"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
