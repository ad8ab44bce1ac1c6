"""Service settings: one ``BaseSettings`` read from ``LD3_*`` environment variables.

``Settings(**overrides)`` builds one in tests; ``get_settings()`` is the process-wide copy.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

# Secrets that appear in examples and tutorials: never accepted as the admin key.
KNOWN_DEFAULT_SECRETS = frozenset({
    "changeme", "change-me", "change_me", "changethis", "admin", "password", "secret", "default",
    "test", "ld3", "ld3-admin", "letmein", "12345678", "",
})
MIN_ADMIN_KEY_CHARS = 16
# The shipped models sit next to the packages in a checkout (an editable install), wherever the
# process starts; a wheel install sets LD3_MODEL_ROOT.
SHIPPED_MODELS = Path(__file__).resolve().parents[1] / "models"


class Settings(BaseSettings):
    """Every setting of the API, the worker and the embedded runner (env prefix ``LD3_``)."""

    model_config = SettingsConfigDict(env_prefix="LD3_", extra="ignore")

    database_url: str = "sqlite:///var/ld3.db"
    broker_url: str | None = None  # None: embedded mode (in-process runner), else e.g. redis://127.0.0.1:6379/0
    model_root: str = str(SHIPPED_MODELS)
    catalog_file: str | None = None  # default: <model_root>/catalog.json
    allow_pickle: bool = False
    device: str = "auto"  # worker: cuda if available, else cpu
    cuda_graphs: bool = False  # worker on CUDA: replay training iterations and validations as CUDA graphs (ld3core.graphs; CPU: slower)
    heartbeat_s: float = Field(10.0, gt=0)
    stale_after_s: float = Field(120.0, gt=0)  # a running job whose heartbeat is older is taken over
    visibility_timeout_s: int = Field(6 * 3600, gt=0)  # broker redelivery: above the longest job
    progress_every_s: float = Field(2.0, gt=0)  # worker: at most one progress write per interval
    checkpoint_every_s: float = Field(60.0, gt=0)  # worker: at most one checkpoint write per interval
    checkpoint_retention_s: float = Field(7 * 86400.0, ge=0)  # a failed job's checkpoint, kept for a retry; 0: forever
    poll_interval_s: float = Field(2.0, gt=0)  # embedded runner: idle poll for queued jobs
    admin_key: str | None = None  # bootstrap admin API key
    auth_required: bool = True  # False only for the local embedded quickstart: every request has all scopes
    cors_origins: list[str] = []
    active_cache_s: float = Field(1.0, ge=0)  # API: how long a process reuses a resolved active schedule pointer
    stale_grace_s: float = Field(300.0, ge=0)  # API, database unreachable: what it resolved this long ago is served, marked stale
    max_body_bytes: int = Field(2**20, gt=0)  # API: the largest request body read; past it a 413, before authentication

    @field_validator("admin_key")
    @classmethod
    def _refuse_default_admin_key(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if v.strip().lower() in KNOWN_DEFAULT_SECRETS:
            raise ValueError(f"admin_key: {v!r} is a well-known default secret; set LD3_ADMIN_KEY to a random value")
        if len(v) < MIN_ADMIN_KEY_CHARS:
            raise ValueError(f"admin_key: must be at least {MIN_ADMIN_KEY_CHARS} characters, got {len(v)}")
        return v

    @field_validator("stale_after_s")
    @classmethod
    def _stale_above_heartbeat(cls, v: float, info: ValidationInfo) -> float:
        hb = info.data.get("heartbeat_s")
        if hb is not None and v <= 2 * hb:
            raise ValueError(f"stale_after_s: {v} must exceed twice heartbeat_s ({hb}) or live jobs look dead")
        return v

    @model_validator(mode="after")
    def _catalog_in_the_model_root(self) -> "Settings":
        if self.catalog_file is None:
            self.catalog_file = str(Path(self.model_root) / "catalog.json")
        return self

    def catalog_problem(self) -> str | None:
        """One line saying what to set when the model catalog cannot be found, else None."""
        if Path(self.catalog_file or "").is_file():
            return None
        return (f"no model catalog at {self.catalog_file} (model root {self.model_root}): set LD3_MODEL_ROOT to the "
                "folder of the models and LD3_CATALOG_FILE to their catalog.json")

    @property
    def embedded(self) -> bool:
        """No broker: the API process runs jobs itself."""
        return self.broker_url is None


@lru_cache
def get_settings() -> Settings:
    """The process-wide settings (read once from the environment)."""
    return Settings()


__all__ = ["Settings", "get_settings", "KNOWN_DEFAULT_SECRETS"]
