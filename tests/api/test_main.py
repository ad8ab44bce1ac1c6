"""The app as a whole: no torch at import, no SQL outside ``registry``, OpenAPI docs, lifespan
bootstrap of the admin key."""

from __future__ import annotations

import ast
import subprocess
import sys

from api_support import ADMIN, ROOT, settings_for

from api.main import create_app


def test_importing_the_api_does_not_import_torch():
    """Of ld3core, only its configuration (no torch: the options' names and defaults) is loaded."""
    code = ("import sys, api.main\n"
            "heavy = sorted(m for m in sys.modules if m in ('torch', 'diffusers', 'transformers', 'worker.runner')\n"
            "               or m.startswith('ld3core.') and m != 'ld3core.config')\n"
            "assert not heavy, heavy\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_building_an_app_does_not_import_torch(db_url):
    code = ("import sys\nfrom api.main import create_app\nfrom registry.settings import Settings\n"
            f"create_app(Settings(database_url={db_url!r}, broker_url=None), queue=None)\n"
            "assert 'torch' not in sys.modules\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


# What ``api/`` may take from SQLAlchemy: sessions and engines to pass to ``registry``, URL
# parsing, errors. Statements (select, update, text, func...) and tables live in ``registry``.
ALLOWED_SQLALCHEMY = {"sqlalchemy": {"Engine", "create_engine"}, "sqlalchemy.orm": {"Session", "sessionmaker"},
                      "sqlalchemy.engine": {"make_url"}, "sqlalchemy.exc": None}  # None: any name


def sql_in_api(path) -> list[str]:
    """What a module of ``api/`` writes of its own SQL: query-building imports, table classes, SQL text."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            allowed = ALLOWED_SQLALCHEMY.get(node.module, set())
            found += [f"from {node.module} import {a.name}" for a in node.names if allowed is not None and a.name not in allowed]
        elif isinstance(node, ast.Import):
            found += [f"import {a.name}" for a in node.names if a.name.split(".")[0] == "sqlalchemy"]
        if isinstance(node, ast.ImportFrom) and node.module == "registry.tables":
            found += [f"from registry.tables import {a.name}" for a in node.names if a.name.endswith("Row")]
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.lstrip().upper().startswith(
                ("SELECT ", "UPDATE ", "INSERT ", "DELETE ")):
            found.append(f"SQL text {node.value[:30]!r}")
    return found


def test_no_module_of_the_api_writes_its_own_sql():
    found = {str(p.relative_to(ROOT)): sql_in_api(p) for p in sorted((ROOT / "api").rglob("*.py"))}
    assert {name: f for name, f in found.items() if f} == {}


def test_the_sql_check_sees_statements_tables_and_sql_text(tmp_path):
    module = tmp_path / "route.py"
    module.write_text("from sqlalchemy import select, text\nfrom sqlalchemy.orm import Session, undefer\n"
                      "from registry.tables import JOB_STATES, JobRow\nimport sqlalchemy\nQ = 'SELECT 1'\n")
    assert sql_in_api(module) == ["from sqlalchemy import select", "from sqlalchemy import text",
                                  "from sqlalchemy.orm import undefer", "from registry.tables import JobRow",
                                  "import sqlalchemy", "SQL text 'SELECT 1'"]


def test_openapi_lists_every_route_and_the_key_schemes(client):
    spec = client.get("/openapi.json").json()
    paths = set(spec["paths"])
    assert {"/jobs", "/jobs/{job_id}", "/jobs/{job_id}/cancel", "/schedules/{model}/{solver}/{nfe}",
            "/schedules/{model}/{solver}/{nfe}/versions", "/schedules/{model}/{solver}/{nfe}/versions/{version}/promote",
            "/models", "/healthz", "/readyz", "/metrics"} <= paths
    assert set(spec["components"]["securitySchemes"]) == {"ApiKeyHeader", "BearerKey"}
    assert spec["paths"]["/healthz"]["get"]["security"] == [] and "security" not in spec["paths"]["/jobs"]["post"]
    assert "If-None-Match" in {p["name"] for p in spec["paths"]["/schedules/{model}/{solver}/{nfe}"]["get"]["parameters"]}
    assert client.get("/docs").status_code == 200


def test_admin_key_bootstrap_is_idempotent_across_restarts(make_client):
    for _ in range(2):  # a second start finds the key's hash already stored
        c = make_client()
        assert c.get("/models", headers=ADMIN).status_code == 200


def test_without_a_queue_and_broker_the_app_owns_an_embedded_runner(db_url):
    app = create_app(settings_for(db_url), queue=None)
    assert app.state.runner is not None and app.state.queue is app.state.runner.queue
    assert not app.state.runner.running  # started by the lifespan only


def test_with_a_broker_the_app_sends_celery_tasks(db_url):
    app = create_app(settings_for(db_url, broker_url="redis://127.0.0.1:6379/15"), queue=None)
    from worker.queue import CeleryQueue

    assert isinstance(app.state.queue, CeleryQueue) and app.state.runner is None
