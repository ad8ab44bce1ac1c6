"""The wheel carries what the service needs at run time besides code (the migrations and the dashboard), and the
command and the client as packages of their own."""

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_wheel(out: Path) -> Path:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(ROOT)], check=True, capture_output=True, text=True)
    (wheel,) = out.glob("*.whl")
    return wheel


def test_an_installed_wheel_migrates_a_database_without_the_checkout(tmp_path):
    wheel = build_wheel(tmp_path / "dist")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"migrations/env.py", "migrations/script.py.mako", "api/dashboard/index.html"} <= names
    assert any(n.startswith("migrations/versions/") and n.endswith(".py") for n in names)
    # The three audiences, each its own package; the console script is the command's.
    assert {"api/main.py", "client/__init__.py", "client/apply.py", "client/http_client.py", "ld3cli/main.py"} <= names
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    assert "ld3 = ld3cli.main:main" in zipfile.ZipFile(wheel).read(entry_points).decode()

    site = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, text=True)
    db = tmp_path / "reg.db"
    code = (
        "import registry.db as d, sqlalchemy as sa\n"
        f"assert d.MIGRATIONS_DIR.is_relative_to({str(site)!r}), d.MIGRATIONS_DIR\n"
        f"e = sa.create_engine('sqlite:///{db}')\n"
        "d.upgrade(e)\n"
        "print(sorted(sa.inspect(e).get_table_names()))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(site)}  # before site-packages, whose editable install maps the checkout
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "schedule_versions" in run.stdout and "jobs" in run.stdout and "alembic_version" in run.stdout
