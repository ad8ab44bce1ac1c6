"""The model catalog in the database: ``ModelRow.spec`` is ``registry.catalog.ModelSpec.to_dict()``.

Specs are validated by ``registry.catalog.ModelSpec`` (which imports no torch).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from .catalog import ModelSpec
from .db import utcnow
from .tables import ModelRow


def upsert_model(s: Session, spec_dict: dict[str, Any]) -> ModelRow:
    """Add or replace the catalog entry ``spec_dict["key"]`` (ValueError naming the bad field)."""
    spec = ModelSpec.from_dict(spec_dict)
    row = s.get(ModelRow, spec.key)
    if row is None:
        row = ModelRow(key=spec.key, spec=spec.to_dict(), created_at=utcnow())
        s.add(row)
    else:
        row.spec = spec.to_dict()
    s.flush()
    return row


def get_model(s: Session, key: str) -> ModelRow | None:
    return s.get(ModelRow, key)


def list_models(s: Session) -> list[ModelRow]:
    return list(s.scalars(select(ModelRow).order_by(ModelRow.key)))


def model_spec(row: ModelRow) -> ModelSpec:
    """The typed catalog entry of a row."""
    return ModelSpec.from_dict(row.spec)


def sync_catalog(s: Session, path: str | Path) -> list[ModelRow]:
    """Upsert every entry of a catalog JSON file (a list of specs); entries not in the file are kept."""
    path = Path(path)
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"catalog file {path}: cannot read it as JSON ({e})") from e
    if not isinstance(entries, list):
        raise ValueError(f"catalog file {path}: must hold a JSON list of model specs, got {type(entries).__name__}")
    rows = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"catalog file {path}, entry {i}: must be an object, got {type(entry).__name__}")
        try:
            rows.append(upsert_model(s, entry))
        except ValueError as e:
            raise ValueError(f"catalog file {path}, entry {i} ({entry.get('key')!r}): {e}") from e
    return rows


__all__ = ["upsert_model", "get_model", "list_models", "model_spec", "sync_catalog"]
