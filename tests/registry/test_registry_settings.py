import pytest
from pydantic import ValidationError

from registry.settings import Settings


def test_defaults_are_the_embedded_mode(monkeypatch):
    for name in [n for n in __import__("os").environ if n.startswith("LD3_")]:
        monkeypatch.delenv(name)
    s = Settings()
    assert s.database_url.startswith("sqlite:///") and s.broker_url is None and s.embedded
    assert s.auth_required and s.admin_key is None and not s.allow_pickle


def test_environment_with_prefix(monkeypatch):
    monkeypatch.setenv("LD3_BROKER_URL", "redis://127.0.0.1:6379/0")
    monkeypatch.setenv("LD3_STALE_AFTER_S", "300")
    monkeypatch.setenv("LD3_CORS_ORIGINS", '["http://localhost:3000"]')
    s = Settings()
    assert s.broker_url == "redis://127.0.0.1:6379/0" and not s.embedded
    assert s.stale_after_s == 300.0 and s.cors_origins == ["http://localhost:3000"]


@pytest.mark.parametrize("key", ["changeme", "ChangeMe", "admin", "short-but-new"])
def test_admin_key_refuses_defaults_and_short_keys(key):
    with pytest.raises(ValidationError, match="admin_key"):
        Settings(admin_key=key)


def test_admin_key_accepts_a_random_one():
    assert Settings(admin_key="x8Jq2mV0pLr7Tz5wKc").admin_key == "x8Jq2mV0pLr7Tz5wKc"


def test_stale_must_exceed_heartbeats():
    with pytest.raises(ValidationError, match="stale_after_s"):
        Settings(heartbeat_s=10, stale_after_s=15)


def test_checkpoint_retention_defaults_to_a_week_and_refuses_negatives(monkeypatch):
    monkeypatch.delenv("LD3_CHECKPOINT_RETENTION_S", raising=False)
    assert Settings().checkpoint_retention_s == 7 * 86400
    monkeypatch.setenv("LD3_CHECKPOINT_RETENTION_S", "0")
    assert Settings().checkpoint_retention_s == 0  # keep forever
    with pytest.raises(ValidationError, match="checkpoint_retention_s"):
        Settings(checkpoint_retention_s=-1)


def test_stale_grace_defaults_to_five_minutes_and_refuses_negatives(monkeypatch):
    monkeypatch.delenv("LD3_STALE_GRACE_S", raising=False)
    assert Settings().stale_grace_s == 300
    monkeypatch.setenv("LD3_STALE_GRACE_S", "0")
    assert Settings().stale_grace_s == 0  # nothing served stale
    with pytest.raises(ValidationError, match="stale_grace_s"):
        Settings(stale_grace_s=-1)


def test_the_shipped_models_are_found_from_any_working_directory(monkeypatch, tmp_path):
    from registry.settings import SHIPPED_MODELS, Settings

    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.model_root == str(SHIPPED_MODELS) and s.catalog_file == str(SHIPPED_MODELS / "catalog.json")
    assert s.catalog_problem() is None
    # The catalog follows the model root unless set itself.
    assert Settings(model_root="/srv/models").catalog_file == "/srv/models/catalog.json"
    assert Settings(model_root="/srv/models", catalog_file="/etc/c.json").catalog_file == "/etc/c.json"


def test_a_missing_catalog_is_one_line_naming_what_to_set(tmp_path):
    from registry.settings import Settings

    problem = Settings(model_root=str(tmp_path)).catalog_problem()
    assert str(tmp_path / "catalog.json") in problem and "LD3_MODEL_ROOT" in problem and "LD3_CATALOG_FILE" in problem


def test_max_body_bytes_defaults_to_a_mebibyte_and_reads_the_environment(monkeypatch):
    monkeypatch.delenv("LD3_MAX_BODY_BYTES", raising=False)
    assert Settings().max_body_bytes == 2**20
    monkeypatch.setenv("LD3_MAX_BODY_BYTES", "4096")
    assert Settings().max_body_bytes == 4096
    with pytest.raises(ValidationError, match="max_body_bytes"):
        Settings(max_body_bytes=0)
