"""``ld3`` commands: the client commands against a live uvicorn server, ``ld3 keys`` on the test
database, the delegation, and the quickstart end to end (embedded service in a subprocess, a real small job over HTTP)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time

import pytest
import uvicorn
from api_support import ADMIN_KEY, ROOT, settings_for

from api.cli import format_quality, main, parser
from api.main import create_app
from registry import keys
from registry.db import session_scope


@pytest.fixture
def live_url(db_url, factory, queue):
    """The app served by uvicorn on a free port, in a thread (jobs are only recorded, not run)."""
    config = uvicorn.Config(create_app(settings_for(db_url), queue), host="127.0.0.1", port=0, log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not (server.started and server.servers):
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


def _auth(url):
    return ["--url", url, "--api-key", ADMIN_KEY]


def test_submit_prints_the_job_id_then_status_and_cancel(live_url, queue, capsys):
    assert main(["submit", "ddpm-digits", "unipc", "5", "-o", "n_train=20", "-o", "loss=l2", *_auth(live_url)]) == 0
    job_id = capsys.readouterr().out.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", job_id) and queue.ids == [job_id]
    assert main(["status", job_id, *_auth(live_url)]) == 0
    out = capsys.readouterr().out
    assert f"job {job_id}: ddpm-digits/unipc/NFE 5  state queued" in out and "submitted" in out
    assert main(["status", "--json", *_auth(live_url)]) == 0
    page = json.loads(capsys.readouterr().out)
    assert page["data"][0]["options"]["n_train"] == 20 and page["data"][0]["options"]["loss"] == "l2"
    assert main(["cancel", job_id, *_auth(live_url)]) == 0
    assert "state cancelled" in capsys.readouterr().out


def test_client_commands_print_the_servers_error(live_url, capsys):
    assert main(["submit", "ddpm-digits", "unipc", "5", "-o", "n_trian=2", *_auth(live_url)]) == 1
    assert "options.n_trian: unknown field" in capsys.readouterr().err
    assert main(["status", "--url", live_url, "--api-key", "ld3_wrong"]) == 1
    assert "HTTP 401" in capsys.readouterr().err


def test_a_service_that_is_not_running_is_one_line_naming_the_url(capsys):
    import socket

    with socket.socket() as sock:  # a free port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    assert main(["status", "--url", url]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"cannot reach the service at {url}" in err and "LD3_URL" in err


def test_serve_without_a_catalog_says_what_to_set(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LD3_MODEL_ROOT", str(tmp_path))
    monkeypatch.delenv("LD3_BROKER_URL", raising=False)
    assert main(["serve", "--no-auth"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "LD3_MODEL_ROOT" in err and str(tmp_path) in err


def test_migrate_loads_the_catalog_into_a_new_database(tmp_path, capsys):
    from registry import models as model_q
    from registry.db import make_engine, make_session_factory

    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    assert main(["migrate", "--database-url", url]) == 0
    assert "catalog" in capsys.readouterr().out
    shipped = {m["key"] for m in json.loads((ROOT / "models" / "catalog.json").read_text())}
    engine = make_engine(url)
    try:
        with session_scope(make_session_factory(engine)) as s:
            assert {m.key for m in model_q.list_models(s)} >= shipped
    finally:
        engine.dispose()


def test_schedule_get_versions_promote(live_url, add_version, capsys):
    add_version(5)
    add_version(5, promote=False)
    assert main(["schedule", "get", "ddpm-digits", "unipc", "5", *_auth(live_url)]) == 0
    out = capsys.readouterr().out
    assert "schedule ddpm-digits/unipc/NFE 5 version 1" in out and "logsnr" in out
    assert re.search(r"^ld3 .*<- served$", out, re.M)  # the version's source is ld3
    assert main(["schedule", "get", "ddpm-digits", "unipc", "5", "--format", "comfyui", "--version", "2", *_auth(live_url)]) == 0
    exported = json.loads(capsys.readouterr().out)
    assert exported["format"] == "comfyui" and exported["version"] == 2 and exported["caveats"]
    assert main(["schedule", "promote", "ddpm-digits", "unipc", "5", "2", *_auth(live_url)]) == 0
    assert "active: version 2" in capsys.readouterr().out
    assert main(["schedule", "versions", "ddpm-digits", "unipc", "5", *_auth(live_url)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("version   2") and lines[1].endswith("<- active")


def test_format_quality_orders_heuristics_and_marks_the_served_schedule():
    table = format_quality({"metric": "l2", "n_test": 4, "source": "edm", "learned": {"mean": 0.02, "sem": 0.01},
                            "best_heuristic": {"name": "edm", "mean": 0.03, "sem": 0.01},
                            "learned_minus_best": {"mean": -0.01, "sem": 0.02},
                            "heuristics": {"logsnr": {"mean": 0.1, "sem": 0.02}, "edm": {"mean": 0.03, "sem": 0.01}}})
    rows = table.splitlines()
    assert rows[0].split()[:3] == ["schedule", "test", "l2"]
    assert [r.split()[0] for r in rows[1:4]] == ["ld3", "edm", "logsnr"]
    assert rows[2].endswith("<- served") and "(paired, n = 4)" in rows[-1]


def test_keys_create_list_revoke_on_the_database(db_url, factory, client, capsys):
    assert main(["keys", "create", "--name", "ci", "--scopes", "schedules:read", "jobs:submit", "--database-url", db_url]) == 0
    out, err = capsys.readouterr()
    plaintext = out.strip()
    assert re.fullmatch(r"ld3_[A-Za-z0-9_-]{43}", plaintext) and "shown this once" in err and plaintext not in err
    with session_scope(factory) as s:
        row = keys.verify_key(s, plaintext)
        assert (row.name, row.scopes) == ("ci", ["schedules:read", "jobs:submit"])
        key_id, key_hash = row.id, row.key_hash
    assert client.get("/jobs", headers={"X-API-Key": plaintext}).status_code == 200  # the service takes it

    assert main(["keys", "list", "--database-url", db_url]) == 0
    table = capsys.readouterr().out
    line = next(x for x in table.splitlines() if " ci " in x)
    assert line.split()[:5] == [str(key_id), "ci", plaintext[:8], "schedules:read", "jobs:submit"] and line.endswith("-")
    assert "bootstrap-admin" in table and key_hash not in table and plaintext not in table

    assert main(["keys", "revoke", str(key_id), "--database-url", db_url]) == 0
    assert f"key {key_id} 'ci'" in capsys.readouterr().out
    with session_scope(factory) as s:
        assert keys.verify_key(s, plaintext) is None
    assert main(["keys", "list", "--json", "--database-url", db_url]) == 0
    (listed,) = [k for k in json.loads(capsys.readouterr().out) if k["id"] == key_id]
    assert listed["revoked_at"] is not None and set(listed) == {"id", "name", "prefix", "scopes", "created_at", "revoked_at"}


def test_keys_reads_the_database_from_the_settings_and_names_bad_input(db_url, factory, monkeypatch, capsys):
    monkeypatch.setenv("LD3_DATABASE_URL", db_url)
    assert main(["keys", "create", "--name", "x", "--scopes", "root"]) == 1
    assert "scopes: unknown ['root']" in capsys.readouterr().err
    assert main(["keys", "revoke", "999"]) == 1
    assert "no API key has id 999" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: beyond the id column's range, never sent to the database
        main(["keys", "revoke", str(2**31)])
    assert "'2147483648' is not a key id" in capsys.readouterr().err
    with session_scope(factory) as s:
        assert keys.list_keys(s) == []  # nothing was created (no app ran here: no bootstrap key either)
    assert main(["keys", "create", "--name", "admin-2", "--scopes", "admin"]) == 0
    with session_scope(factory) as s:
        assert keys.verify_key(s, capsys.readouterr().out.strip()).scopes == ["admin"]


def test_keys_on_an_unmigrated_database_says_so(tmp_path, capsys):
    assert main(["keys", "list", "--database-url", f"sqlite:///{tmp_path}/empty.db"]) == 1
    assert "is it migrated?" in capsys.readouterr().err


def test_worker_refuses_to_start_without_a_broker(monkeypatch, capsys):
    monkeypatch.delenv("LD3_BROKER_URL", raising=False)
    assert main(["worker"]) == 2
    assert "LD3_BROKER_URL" in capsys.readouterr().err


def test_optimize_and_models_go_to_ld3core(capsys):
    assert main(["models"]) == 0
    assert "gmm2d-edm" in capsys.readouterr().out.split()
    assert {"serve", "worker", "submit", "status", "schedule", "keys", "quickstart", "optimize", "evaluate"} <= set(
        parser()._subparsers._group_actions[0].choices)


def test_cli_import_is_light():
    code = "import sys, api.cli; assert not [m for m in ('torch', 'uvicorn', 'sqlalchemy', 'fastapi') if m in sys.modules]"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
def test_quickstart_runs_a_real_job_over_http_and_prints_the_schedule(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    env.pop("LD3_BROKER_URL", None)
    small = ["-o", "n_train=4", "-o", "n_val=4", "-o", "n_test=4", "-o", "teacher_nfe=6", "-o", "phase1_epochs=1",
             "-o", "phase2_epochs=0", "-o", "loss=l2", "-o", "starts=1"]
    proc = subprocess.run([sys.executable, "-m", "api.cli", "quickstart", "--database-url", f"sqlite:///{tmp_path}/ld3.db",
                           "--port", "0", "--quiet", *small], capture_output=True, text=True, timeout=600, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "schedule ddpm-digits/unipc/NFE 4 version 1" in out
    t_steps = [float(x) for x in re.search(r"t_steps: (.*)", out).group(1).split(", ")]
    assert len(t_steps) == 5 and all(a > b for a, b in zip(t_steps, t_steps[1:]))
    assert re.search(r"^ld3\s+\d", out, re.M) and "<- served" in out
    assert "service stopped" in proc.stderr  # exit status 0: the job succeeded


def _job(state, phase=None, done=0, total=0):
    return {"id": "j1", "state": state, "progress": {"phase": phase, "done": done, "total": total}}


def test_progress_bar_completes_a_phase_the_polls_left_short(capsys):
    from api.cli import ProgressBar

    bar, seen = ProgressBar(tty=True), []
    bar(_job("running", "teacher", 10, 40))
    first = bar.bar
    bar(_job("running", "training", 3, 50))  # the teacher phase ended between two polls
    seen.append((first.n, first.total))
    second = bar.bar
    bar(_job("succeeded", "evaluation", 5, 5))
    seen.append((second.n, second.total))
    assert seen == [(40, 40), (50, 50)]
    err = capsys.readouterr().err
    assert "teacher: 100%" in err and "40/40" in err and "50/50" in err


def test_progress_bar_leaves_a_failed_phase_where_it_stopped():
    from api.cli import ProgressBar

    bar = ProgressBar(tty=True)
    bar(_job("running", "training", 7, 50))
    training = bar.bar
    bar(_job("failed", "training", 7, 50))
    assert training.n == 7 and bar.bar is None
