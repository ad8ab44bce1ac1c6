"""``ld3 keys`` straight on the test database."""

from __future__ import annotations

import json
import re

import pytest

from ld3cli.main import main
from registry import keys
from registry.db import session_scope


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
