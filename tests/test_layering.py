"""The tree shows the layers: ``api/`` is the server alone, ``client/`` is what an inference
service imports, ``ld3cli/`` the command over both. Each package is imported, every module of
it, in a fresh interpreter, and ``sys.modules`` says what came with it."""

from __future__ import annotations

import subprocess
import sys


def imported_with(package: str) -> set[str]:
    """Every module loaded by importing each module of ``package`` (its ``__main__`` aside)."""
    code = ("import importlib, pkgutil, sys\n"
            f"pkg = importlib.import_module({package!r})\n"
            "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
            "    if not m.name.endswith('__main__'):\n"
            "        importlib.import_module(m.name)\n"
            "print('\\n'.join(sys.modules))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def under(modules: set[str], *roots: str) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


def test_the_server_imports_nothing_of_the_command_or_the_client():
    assert under(imported_with("api"), "ld3cli", "client") == []


def test_the_client_imports_no_server_worker_database_or_library():
    forbidden = under(imported_with("client"), "api", "worker", "ld3cli", "registry.db", "sqlalchemy", "celery", "fastapi",
                      "uvicorn", "torch", "diffusers")
    assert forbidden == []


def test_the_command_line_imports_neither_the_server_nor_torch_until_a_command_runs():
    assert under(imported_with("ld3cli"), "api", "worker", "sqlalchemy", "celery", "fastapi", "uvicorn", "torch") == []
