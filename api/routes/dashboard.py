"""The ops dashboard: its static pages under ``/dashboard`` and the few read-only calls it needs.

The pages (``api/dashboard/``: HTML, CSS, plain JS modules, no CDN) call the public API with
the key the operator typed in, sent as ``X-API-Key`` (kept in the tab's session storage, never
in a URL). Besides the public routes they use:

- ``GET /dashboard/api/config`` (no key): whether a key is needed at all;
- ``GET /auth/me``: the calling key's name and scopes (which buttons to show);
- ``GET /dashboard/api/schedules``: every active schedule with its quality (the schedules table);
- ``GET /dashboard/api/versions/{id}``: one version by id, and whether it has a sample grid;
- ``GET /schedules/{model}/{solver}/{nfe}/versions/{v}/samples.png``: that grid (heuristic above,
  learned below, same seeds), drawn by the worker at evaluation time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse, Response
from pydantic import BaseModel
from sqlalchemy import select
from sqlalchemy.orm import Session, undefer

from registry import schedules as q
from registry.schemas import ScheduleVersionPublic
from registry.tables import ActiveScheduleRow, ScheduleVersionRow

from ..auth import Principal, ReadDep, authenticate
from ..deps import SessionDep
from ..errors import documented
from ..params import Guidance, Model, Nfe, Solver, Version, VersionId

STATIC_DIR = Path(__file__).resolve().parent.parent / "dashboard"
STATIC_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".css": "text/css; charset=utf-8", ".svg": "image/svg+xml", ".png": "image/png"}
# The pages load nothing from elsewhere and run no inline script; blob: is the sample grid.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
                               "script-src 'self'; connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}

router = APIRouter(tags=["dashboard"])


class Me(BaseModel):
    """Who the calling key is and what it may do."""

    name: str
    scopes: list[str]


class DashboardConfig(BaseModel):
    auth_required: bool


class ActiveSchedule(BaseModel):
    """One cell of the schedules table: the active version of (model, solver, nfe, guidance)."""

    model: str
    solver: str
    nfe: int
    guidance: float | None
    version: int
    version_id: int
    source: str
    val_loss: float | None
    quality: dict[str, Any]
    job_id: str | None
    created_at: Any


class VersionDetail(ScheduleVersionPublic):
    has_samples: bool


# Pages and assets.

@router.get("/dashboard", include_in_schema=False)
def dashboard_root() -> RedirectResponse:
    return RedirectResponse("/dashboard/", status_code=307)


@router.get("/dashboard/", include_in_schema=False)
def dashboard_index() -> FileResponse:
    return _static("index.html")


def _static(rel: str) -> FileResponse:
    """A file of ``api/dashboard/`` (404 for anything outside it or of an unknown type)."""
    path = (STATIC_DIR / rel).resolve()
    if not path.is_relative_to(STATIC_DIR) or not path.is_file() or path.suffix not in STATIC_TYPES:
        raise HTTPException(404, detail=f"no dashboard file {rel!r}")
    return FileResponse(path, media_type=STATIC_TYPES[path.suffix], headers=SECURITY_HEADERS)


# Read-only calls of the pages.

@router.get("/dashboard/api/config", response_model=DashboardConfig)
def dashboard_config(request: Request) -> Any:
    """Whether the service wants an API key (no key needed to ask)."""
    return DashboardConfig(auth_required=request.app.state.settings.auth_required)


@router.get("/dashboard/api/schedules", response_model=list[ActiveSchedule])
def active_schedules(s: SessionDep, _: ReadDep) -> Any:
    """Every active schedule, by model, solver, NFE and guidance."""
    rows = s.execute(
        select(ScheduleVersionRow).join(ActiveScheduleRow, ActiveScheduleRow.version_id == ScheduleVersionRow.id)
        .order_by(ScheduleVersionRow.model_key, ScheduleVersionRow.solver, ScheduleVersionRow.nfe,
                  ScheduleVersionRow.guidance_key)).scalars()
    return [ActiveSchedule(model=r.model_key, solver=r.solver, nfe=r.nfe, guidance=r.guidance, version=r.version,
                           version_id=r.id, source=r.source, val_loss=r.val_loss, quality=r.quality,
                           job_id=r.job_id, created_at=r.created_at) for r in rows]


@router.get("/dashboard/api/versions/{version_id}", response_model=VersionDetail,
            responses=documented({404: "No schedule version has this id"}))
def version_detail(s: SessionDep, _: ReadDep, version_id: VersionId) -> Any:
    """One schedule version by id (a job's ``schedule_version_id``), with ``has_samples``."""
    row = q.get_version_by_id(s, version_id)
    if row is None:
        raise HTTPException(404, detail=f"schedule version id {version_id} not found")
    active = q.get_active(s, row.model_key, row.solver, row.nfe, row.guidance)
    public = ScheduleVersionPublic.from_row(row, active=active is not None and active.id == row.id)
    has = s.scalar(select(ScheduleVersionRow.samples_png.is_not(None)).where(ScheduleVersionRow.id == version_id))
    return VersionDetail(**public.model_dump(), has_samples=bool(has))


@router.get("/auth/me", response_model=Me, tags=["auth"])
def whoami(principal: Annotated[Principal, Depends(authenticate)]) -> Any:
    """The calling key's name and scopes (401 without a valid key)."""
    return Me(name=principal.name, scopes=sorted(principal.scopes))


@router.get("/schedules/{model}/{solver}/{nfe}/versions/{version}/samples.png", tags=["schedules"],
            response_class=Response, responses={200: {"content": {"image/png": {}}},
                                                **documented({404: "No such version, or it has no sample grid"})})
def version_samples(s: SessionDep, _: ReadDep, model: Model, solver: Solver, nfe: Nfe, version: Version,
                    guidance: Guidance = None) -> Response:
    """The version's sample grid: the best heuristic's samples above, the learned schedule's below."""
    row = _version_with_samples(s, model, solver, nfe, version, guidance)
    if row is None:
        raise HTTPException(404, detail=f"no version {version} of the schedule {model}/{solver}/{nfe}")
    if row.samples_png is None:
        raise HTTPException(404, detail=f"version {version} of {model}/{solver}/{nfe} has no sample grid "
                                        "(the model's samples are not images, or drawing them failed)")
    return Response(row.samples_png, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=31536000, immutable"})


def _version_with_samples(s: Session, model: str, solver: str, nfe: int, version: int,
                          guidance: float | None) -> ScheduleVersionRow | None:
    return s.scalar(select(ScheduleVersionRow).options(undefer(ScheduleVersionRow.samples_png)).where(
        ScheduleVersionRow.model_key == model, ScheduleVersionRow.solver == solver, ScheduleVersionRow.nfe == nfe,
        ScheduleVersionRow.guidance_key == q.guidance_key(guidance), ScheduleVersionRow.version == version))


# Last: the catch-all for the page's assets.
@router.get("/dashboard/{rel:path}", include_in_schema=False)
def dashboard_asset(rel: str) -> FileResponse:
    return _static(rel)


__all__ = ["router", "STATIC_DIR"]
