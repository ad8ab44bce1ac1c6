"""``/models``: the catalog of models a job may name (adding one is an admin's act)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, Response

from registry import models as q
from registry.schemas import ModelCreate, ModelPublic

from ..auth import AdminDep, ReadDep
from ..deps import SessionDep
from ..errors import documented, field_error
from ..params import Model

router = APIRouter(prefix="/models", tags=["models"])


@router.get("", response_model=list[ModelPublic])
def list_models(s: SessionDep, _: ReadDep) -> Any:
    """Every catalog entry, by key."""
    return [ModelPublic.from_row(r) for r in q.list_models(s)]


@router.get("/{key}", response_model=ModelPublic, responses=documented({404: "No catalog entry has this key"}))
def get_model(key: Model, s: SessionDep, _: ReadDep) -> Any:
    row = q.get_model(s, key)
    if row is None:
        raise HTTPException(404, detail=f"model {key!r} not found")
    return ModelPublic.from_row(row)


@router.post("", status_code=201, response_model=ModelPublic,
             responses={200: {"model": ModelPublic, "description": "The same entry already exists"},
                        **documented({409: "The key exists with a different spec"})})
def add_model(data: ModelCreate, response: Response, s: SessionDep, _: AdminDep) -> Any:
    """Add a catalog entry (admin). The spec follows ``registry.catalog.ModelSpec``'s rules."""
    spec = data.spec_dict()
    existing = q.get_model(s, data.key)
    if existing is not None:
        if existing.spec != spec:
            raise HTTPException(409, detail=[field_error(["body", "key"], f"key: model {data.key!r} exists with a different spec; "
                                                                           "a catalog entry is not changed in place, add a new key")])
        response.status_code = 200
        return ModelPublic.from_row(existing)
    row = q.upsert_model(s, spec)
    s.commit()
    return ModelPublic.from_row(row)
