"""API keys: ``ld3_`` + 32 random urlsafe bytes, stored only as their sha256.

The plaintext is returned once by ``create_key``; ``verify_key`` hashes what a request
carries and looks the hash up (a 256-bit random secret needs no slow hash).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.orm import Session

from .db import utcnow
from .schemas import SCOPES
from .tables import ApiKeyRow

KEY_PREFIX = "ld3_"


def hash_key(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def _check_scopes(scopes: Sequence[str]) -> list[str]:
    unknown = [x for x in scopes if x not in SCOPES]
    if unknown or not scopes:
        raise ValueError(f"scopes: unknown {unknown} or empty; known: {', '.join(SCOPES)}")
    return list(dict.fromkeys(scopes))


def _add(s: Session, name: str, scopes: Sequence[str], plaintext: str) -> ApiKeyRow:
    if not 1 <= len(name) <= 100:
        raise ValueError(f"name: must be 1-100 characters, got {len(name)}")
    row = ApiKeyRow(name=name, prefix=plaintext[:8], key_hash=hash_key(plaintext), scopes=_check_scopes(scopes),
                    created_at=utcnow())
    s.add(row)
    s.flush()
    return row


def create_key(s: Session, *, name: str, scopes: Sequence[str]) -> tuple[ApiKeyRow, str]:
    """A new key; returns the row and the plaintext (shown once, never stored)."""
    plaintext = KEY_PREFIX + secrets.token_urlsafe(32)
    return _add(s, name, scopes, plaintext), plaintext


def ensure_key(s: Session, plaintext: str, *, name: str, scopes: Sequence[str]) -> ApiKeyRow:
    """Register an operator-chosen key (e.g. ``Settings.admin_key``) unless its hash is already stored."""
    row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == hash_key(plaintext)))
    return row if row is not None else _add(s, name, scopes, plaintext)


def verify_key(s: Session, plaintext: str) -> ApiKeyRow | None:
    """The unrevoked key with this plaintext, or None."""
    digest = hash_key(plaintext)
    row = s.scalar(select(ApiKeyRow).where(ApiKeyRow.key_hash == digest))
    if row is None or row.revoked_at is not None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return row


def revoke_key(s: Session, key_id: int) -> ApiKeyRow | None:
    """Revoke key ``key_id`` (kept for the audit trail); None if there is no such key."""
    row = s.get(ApiKeyRow, key_id)
    if row is not None and row.revoked_at is None:
        row.revoked_at = utcnow()
        s.flush()
    return row


def list_keys(s: Session) -> list[ApiKeyRow]:
    return list(s.scalars(select(ApiKeyRow).order_by(ApiKeyRow.id)))


__all__ = ["KEY_PREFIX", "hash_key", "create_key", "ensure_key", "verify_key", "revoke_key", "list_keys"]
