"""docker-compose.yml and Dockerfile.gpu, validated without a Docker engine.

``docker-compose config`` (Debian's docker-compose 1.29) resolves the file as Compose would; the
result is checked against what the code reads (registry.settings.Settings) and the Dockerfile
against scripts/bootstrap.sh. A missing docker-compose is a failure, not a skip.
"""

import os
import re
import shutil
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from registry.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile.gpu"
BOOTSTRAP = ROOT / "scripts" / "bootstrap.sh"
TEST_TOOLS = ("k-diffusion",)  # bootstrap.sh's --no-deps installs that only the tests use: not in the image
SECRETS = {"LD3_ADMIN_KEY": "k3y-for-the-compose-test-0123456789", "POSTGRES_PASSWORD": "pw-for-the-compose-test"}


def compose_config(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.fail("docker-compose is not installed (apt-get install -y docker-compose)")
    empty_env_file = tmp_path / "empty.env"  # a developer's .env must not change what is tested
    empty_env_file.write_text("")
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("LD3_", "POSTGRES_", "COMPOSE_"))}
    return subprocess.run([exe, "--env-file", str(empty_env_file), "-f", str(COMPOSE), "config"],
                          env={**clean, **env}, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> dict:
    done = compose_config(tmp_path_factory.mktemp("compose"), **SECRETS)
    assert done.returncode == 0, done.stderr
    return yaml.safe_load(done.stdout)


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(env) if isinstance(env, dict) else dict(item.split("=", 1) for item in env)


def test_services_exist(config):
    assert {"postgres", "redis", "migrate", "api", "worker"} <= set(config["services"])
    assert "models" in config["volumes"]


def test_postgres_and_redis_have_healthchecks(config):
    for name in ("postgres", "redis"):
        assert config["services"][name]["healthcheck"]["test"], name


def test_worker_reserves_one_gpu_and_runs_one_job_at_a_time(config):
    worker = config["services"]["worker"]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]
    cmd = worker["command"]
    assert cmd[:4] == ["celery", "-A", "worker.celery_app", "worker"]
    flags = dict(zip(cmd[4::2], cmd[5::2]))
    assert flags["-Q"] == "gpu" and flags["--concurrency"] == "1" and flags["--prefetch-multiplier"] == "1"


def test_api_serves_the_app_factory_on_port_8000(config):
    api = config["services"]["api"]
    assert api["command"][:3] == ["uvicorn", "api.main:create_app", "--factory"]
    assert api["command"][api["command"].index("--port") + 1] == "8000"
    assert any(p["target"] == 8000 for p in api["ports"])


def test_migrations_complete_before_api_and_worker(config):
    services = config["services"]
    assert services["migrate"]["command"] == ["ld3", "migrate"]  # migrations, then the catalog
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    for name in ("api", "worker"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully", name
    assert (ROOT / "alembic.ini").is_file() and (ROOT / "migrations" / "env.py").is_file()


def test_every_ld3_variable_is_a_setting_and_builds_valid_settings(config):
    for name, service in config["services"].items():
        env = {k: v for k, v in env_of(service).items() if k.startswith("LD3_")}
        unknown = [k for k in env if k.removeprefix("LD3_").lower() not in Settings.model_fields]
        assert not unknown, f"{name}: {unknown} are not fields of registry.settings.Settings"
        Settings(**{k.removeprefix("LD3_").lower(): v for k, v in env.items()})  # types and secret rules hold


def test_urls_point_at_the_compose_services(config):
    services = config["services"]
    for name in ("api", "worker", "migrate"):
        db = urlsplit(env_of(services[name])["LD3_DATABASE_URL"])
        assert db.scheme == "postgresql+psycopg" and db.hostname == "postgres" and (db.port or 5432) == 5432, name
        pg = env_of(services["postgres"])
        assert (db.username, db.password, db.path.lstrip("/")) == (pg["POSTGRES_USER"], pg["POSTGRES_PASSWORD"], pg["POSTGRES_DB"])
    for name in ("api", "worker"):
        broker = urlsplit(env_of(services[name])["LD3_BROKER_URL"])
        assert broker.scheme == "redis" and broker.hostname == "redis" and (broker.port or 6379) == 6379, name
    assert services["postgres"]["image"].startswith("postgres:") and services["redis"]["image"].startswith("redis:")


def test_models_volume_is_the_model_root(config):
    for name in ("api", "worker"):
        service = config["services"][name]
        mounts = {v.split(":")[1]: v.split(":")[0] for v in service["volumes"]}
        assert mounts[env_of(service)["LD3_MODEL_ROOT"]] == "models", name
        assert env_of(service)["LD3_CATALOG_FILE"].startswith(env_of(service)["LD3_MODEL_ROOT"] + "/")


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_secrets_have_no_default(tmp_path, missing):
    env = {k: v for k, v in SECRETS.items() if k != missing}
    done = compose_config(tmp_path, **env)
    assert done.returncode != 0 and missing in done.stderr
    text = COMPOSE.read_text()
    assert re.findall(rf"\$\{{{missing}(:?[-?])", text) and set(re.findall(rf"\$\{{{missing}(:?[-?])", text)) == {":?"}


# Dockerfile.gpu against scripts/bootstrap.sh.


def dockerfile_runs() -> list[str]:
    """Every RUN instruction, line continuations joined, split at `&&`."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    runs = [line.split(None, 1)[1] for line in text.splitlines() if line.startswith("RUN ")]
    return [" ".join(cmd.split()) for run in runs for cmd in run.split("&&")]


def test_dockerfile_installs_with_the_constraints_and_runs_the_bootstrap_steps():
    commands = dockerfile_runs()
    pip_installs = [c for c in commands if "-m pip install" in c]
    assert pip_installs and all("-c constraints.txt" in c for c in pip_installs), pip_installs
    assert any(c.split()[-1] == '".[worker]"' for c in pip_installs), "the project itself is installed, with the worker's extra"
    packages = re.search(r"include = \[([^\]]*)\]", (ROOT / "pyproject.toml").read_text()).group(1)
    for pkg in re.findall(r'"(\w+)\*?"', packages):
        assert re.search(rf"^COPY {pkg} {pkg}$", DOCKERFILE.read_text(), re.M), f"package {pkg} is not copied into the image"
    no_deps = re.findall(r"--no-deps\s+(\S+==\S+)", BOOTSTRAP.read_text())
    assert no_deps, "bootstrap.sh has --no-deps installs"
    for pkg in (p for p in no_deps if p.split("==")[0] not in TEST_TOOLS):
        assert any("--no-deps" in c and c.split()[-1] == pkg for c in pip_installs), f"{pkg} --no-deps missing"
    for module in re.findall(r"-m\s+(ld3core\.\w+)", BOOTSTRAP.read_text()):
        assert any(f"-m {module}" in c for c in commands), f"bootstrap step python -m {module} missing"
    assert re.search(r"^COPY [^\n]*\bconstraints\.txt\b", DOCKERFILE.read_text(), re.M), "constraints.txt copied"


def test_dockerfile_base_python_user_and_offline():
    text = DOCKERFILE.read_text()
    base = re.search(r"ARG CUDA_IMAGE=(\S+)", text).group(1)
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    assert "python3.11 -m venv" in text
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1] not in ("root", "0")
    assert re.search(r"HF_HUB_OFFLINE=1", text)
    for var in set(re.findall(r"\b(LD3_[A-Z_]+)=", text)):  # every LD3_ variable it sets is read somewhere
        read = var.removeprefix("LD3_").lower() in Settings.model_fields or any(
            var in p.read_text() for p in (ROOT / "ld3core").rglob("*.py"))
        assert read, f"{var} is set in Dockerfile.gpu but read by nothing"


def test_dockerfile_copies_what_the_services_run(config):
    text = DOCKERFILE.read_text()
    for path in ("alembic.ini", "migrations", "api", "worker", "registry", "ld3core", "models"):
        assert re.search(rf"^COPY\s+{path}\b", text, re.M), path
        assert (ROOT / path).exists(), path
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".env" in ignored and ".venv" in ignored and ".git" in ignored
    assert config["services"]["worker"]["build"]["dockerfile"] == "Dockerfile.gpu"
