"""The ops dashboard: its static pages under ``/dashboard`` and the few read-only calls it needs.

The pages (``api/dashboard/``: HTML, CSS, plain JS modules, no CDN) call the public API with
the key the operator typed in, sent as ``X-API-Key`` (kept in the tab's session storage, never
in a URL). Besides the public routes (``/auth/me`` for the buttons a key may see, the sample
grid of ``routes/samples.py``) they use:

- ``GET /dashboard/api/config`` (no key): whether a key is needed at all;
- ``GET /dashboard/api/schedules``: every active schedule with its quality (the schedules table);
- ``GET /dashboard/api/versions/{id}``: one version by id, whether it has a sample grid, and the
  step sigmas its job stored for the learned schedule and each heuristic (the step-time plot).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse, RedirectResponse
from pydantic import BaseModel, Field

from registry import jobs as job_q
from registry import schedules as q
from registry.schemas import ScheduleVersionPublic

from ..auth import ReadDep
from ..deps import SessionDep
from ..errors import documented
from ..params import VersionId

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
    config: dict[str, Any] = Field(description="the job's full configuration (``guard_z`` 0: published with the test guard off)")
    job_id: str | None
    created_at: Any


class VersionDetail(ScheduleVersionPublic):
    has_samples: bool
    step_sigmas: dict[str, list[float | None]] | None = Field(
        description="the N+1 step sigmas of the learned schedule (\"ld3\") and of every heuristic the job scored, as "
                    "its worker stored them; null for a version without a job or a job that stored none")


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
    return [ActiveSchedule(model=r.model_key, solver=r.solver, nfe=r.nfe, guidance=r.guidance, version=r.version,
                           version_id=r.id, source=r.source, val_loss=r.val_loss, quality=r.quality, config=r.config,
                           job_id=r.job_id, created_at=r.created_at) for r in q.list_active(s)]


@router.get("/dashboard/api/versions/{version_id}", response_model=VersionDetail,
            responses=documented({404: "No schedule version has this id"}))
def version_detail(s: SessionDep, _: ReadDep, version_id: VersionId) -> Any:
    """One schedule version by id (a job's ``schedule_version_id``), with ``has_samples`` and its job's ``step_sigmas``."""
    row = q.get_version_by_id(s, version_id)
    if row is None:
        raise HTTPException(404, detail=f"schedule version id {version_id} not found")
    active = q.get_active(s, row.model_key, row.solver, row.nfe, row.guidance)
    public = ScheduleVersionPublic.from_row(row, active=active is not None and active.id == row.id)
    job = None if row.job_id is None else job_q.get_job(s, row.job_id)
    step_sigmas = (job.result or {}).get("step_sigmas") if job is not None else None
    return VersionDetail(**public.model_dump(), has_samples=q.has_samples(s, version_id),
                         step_sigmas=step_sigmas if isinstance(step_sigmas, dict) else None)


# Last: the catch-all for the page's assets.
@router.get("/dashboard/{rel:path}", include_in_schema=False)
def dashboard_asset(rel: str) -> FileResponse:
    return _static(rel)


__all__ = ["router", "STATIC_DIR"]
