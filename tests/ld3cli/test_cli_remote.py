"""``ld3 submit``, ``status``, ``cancel``, ``schedule`` against the app served by uvicorn (jobs are only recorded)."""

from __future__ import annotations

import json
import re

from api_support import ADMIN_KEY

from ld3cli.main import main


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
