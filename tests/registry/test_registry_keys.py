import pytest
from sqlalchemy import select

from registry import keys
from registry.db import session_scope
from registry.tables import ApiKeyRow


def test_create_verify_revoke(session_factory):
    with session_scope(session_factory) as s:
        row, plaintext = keys.create_key(s, name="ci", scopes=["jobs:submit", "schedules:read"])
        key_id = row.id
    assert plaintext.startswith("ld3_") and len(plaintext) > 40
    with session_scope(session_factory) as s:
        stored = s.scalar(select(ApiKeyRow))
        assert stored.key_hash != plaintext and plaintext not in stored.key_hash and stored.prefix == plaintext[:8]
        assert keys.verify_key(s, plaintext).scopes == ["jobs:submit", "schedules:read"]
        assert keys.verify_key(s, plaintext + "x") is None
        keys.revoke_key(s, key_id)
    with session_scope(session_factory) as s:
        assert keys.verify_key(s, plaintext) is None
        assert keys.list_keys(s)[0].revoked_at is not None
        assert keys.revoke_key(s, 999) is None


def test_ensure_key_is_idempotent(session_factory):
    secret = "operator-chosen-admin-key-123"
    with session_scope(session_factory) as s:
        first = keys.ensure_key(s, secret, name="bootstrap", scopes=["admin"])
        assert keys.ensure_key(s, secret, name="bootstrap", scopes=["admin"]).id == first.id
        assert keys.verify_key(s, secret).scopes == ["admin"]


def test_unknown_scope(sqlite_session_factory):
    with session_scope(sqlite_session_factory) as s, pytest.raises(ValueError, match="scopes: unknown \\['root'\\]"):
        keys.create_key(s, name="x", scopes=["root"])
