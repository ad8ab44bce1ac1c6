"""``/keys``: API-key management (admin): create (the plaintext is returned once), list, revoke.

Only hashes are stored and nothing here returns one. Revoking drops the key from this
process's verified-key cache at once; other API processes keep honouring a key they verified
in the last ``api.auth.KEY_CACHE_TTL_S`` seconds until their entry expires.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, HTTPException, Request

from registry import keys as q
from registry.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyPublic

from ..auth import AdminDep
from ..deps import SessionDep
from ..errors import documented
from ..params import KeyId

log = logging.getLogger(__name__)

router = APIRouter(prefix="/keys", tags=["keys"])


@router.post("", status_code=201, response_model=ApiKeyCreated)
def create_key(data: ApiKeyCreate, s: SessionDep, admin: AdminDep) -> Any:
    """A new key with these scopes; its plaintext ``key`` is in this response only (store it now)."""
    row, plaintext = q.create_key(s, name=data.name, scopes=data.scopes)
    s.commit()
    log.info("API key %d %r (%s...) created by %r with scopes %s", row.id, row.name, row.prefix, admin.name, row.scopes)
    return ApiKeyCreated(**ApiKeyPublic.from_row(row).model_dump(), key=plaintext)


@router.get("", response_model=list[ApiKeyPublic])
def list_keys(s: SessionDep, _: AdminDep) -> Any:
    """Every key, revoked ones included (name, display prefix, scopes, dates; never a hash)."""
    return [ApiKeyPublic.from_row(r) for r in q.list_keys(s)]


@router.delete("/{key_id}", response_model=ApiKeyPublic, responses=documented({404: "No key has this id"}))
def revoke_key(key_id: KeyId, request: Request, s: SessionDep, admin: AdminDep) -> Any:
    """Revoke a key (kept, with ``revoked_at``, for the record); revoking it again changes nothing."""
    row = q.revoke_key(s, key_id)
    if row is None:
        raise HTTPException(404, detail=f"key_id: no API key has id {key_id}")
    s.commit()
    request.app.state.key_cache.discard(row.key_hash)
    log.info("API key %d %r (%s...) revoked by %r", row.id, row.name, row.prefix, admin.name)
    return ApiKeyPublic.from_row(row)
