"""``GET /auth/me``: who the calling key is and what it may do (the dashboard shows the buttons it may use)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends
from pydantic import BaseModel

from ..auth import Principal, authenticate

router = APIRouter(prefix="/auth", tags=["auth"])


class Me(BaseModel):
    """Who the calling key is and what it may do."""

    name: str
    scopes: list[str]


@router.get("/me", response_model=Me)
def whoami(principal: Annotated[Principal, Depends(authenticate)]) -> Any:
    """The calling key's name and scopes (401 without a valid key)."""
    return Me(name=principal.name, scopes=sorted(principal.scopes))


__all__ = ["router", "Me"]
