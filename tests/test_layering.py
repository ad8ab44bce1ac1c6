"""The tree shows the layers: ``api/`` is the server alone, ``client/`` is what an inference
service imports, ``ld3cli/`` the command over both. Each package is imported, every module of
it, in a fresh interpreter, and ``sys.modules`` says what came with it.

The client's side is what the ``[client]`` extra installs (pyproject.toml): ``import client``
needs httpx alone; its torch integrations, imported on demand, need ld3core's solvers and
schedules, which need torch alone (tests/client/test_client_install.py installs just that)."""

from __future__ import annotations

import subprocess
import sys


def imported_with(package: str) -> set[str]:
    """Every module loaded by importing each module of ``package`` (its ``__main__`` aside)."""
    return loaded_by(f"pkg = importlib.import_module({package!r})\n"
                     "for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + '.'):\n"
                     "    if not m.name.endswith('__main__'):\n"
                     "        importlib.import_module(m.name)\n")


def loaded_by(code: str) -> set[str]:
    """``sys.modules`` after ``code`` ran in a fresh interpreter (``importlib`` and ``pkgutil`` imported)."""
    code = "import importlib, pkgutil, sys\n" + code + "print('\\n'.join(sys.modules))\n"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def under(modules: set[str], *roots: str) -> list[str]:
    return sorted(m for m in modules if any(m == r or m.startswith(r + ".") for r in roots))


def test_the_server_imports_nothing_of_the_command_or_the_client():
    assert under(imported_with("api"), "ld3cli", "client") == []


def test_the_client_imports_no_server_worker_or_database():
    assert under(imported_with("client"), "api", "worker", "ld3cli", "registry.db", "sqlalchemy", "celery", "fastapi",
                 "uvicorn") == []


def test_importing_the_client_loads_no_torch_or_pipeline_library():
    assert under(loaded_by("import client\n"), "torch", "numpy", "diffusers") == []


def test_the_solvers_and_schedules_the_client_integrations_run_need_torch_alone():
    # Not the [worker] extra's packages (tqdm is left out: torch imports it itself where it is installed).
    modules = loaded_by("import ld3core.solvers, ld3core.schedules\n")
    assert "torch" in modules
    assert under(modules, "scipy", "safetensors", "sklearn", "diffusers", "transformers", "PIL", "registry", "worker", "api",
                 "sqlalchemy", "celery", "fastapi") == []


def test_the_command_line_imports_neither_the_server_nor_torch_until_a_command_runs():
    assert under(imported_with("ld3cli"), "api", "worker", "sqlalchemy", "celery", "fastapi", "uvicorn", "torch") == []
