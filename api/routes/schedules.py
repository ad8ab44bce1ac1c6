"""``/schedules``: serve the active (or a given) version of a learned schedule, list and promote versions.

``GET /schedules/{model}/{solver}/{nfe}`` is the hot path inference services poll. It runs
one indexed query (the active pointer's primary key, or the version's unique key) for the
version id; versions are immutable, so the response body and its ETag are cached per
(version id, format) in the process and never go stale. Promotion moves the pointer, which
the next request reads. While the database cannot be reached, what this process resolved within
``LD3_STALE_GRACE_S`` is served with ``X-LD3-Stale: true`` (``api.outage``).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from threading import Lock
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import JSONResponse, Response
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool

from registry import exports
from registry import models as model_q
from registry import schedules as q
from registry.schemas import ExportFormat, ScheduleExport, ScheduleVersionPublic

from ..auth import AdminDep, ReadDep
from ..deps import SessionDep
from ..errors import ErrorBody, documented, field_error
from ..outage import STALE_HEADER
from ..params import Guidance, Model, Nfe, Solver, Version, VersionQuery

router = APIRouter(prefix="/schedules", tags=["schedules"])

ACTIVE_CACHE_CONTROL = "public, max-age=30, must-revalidate"  # the pointer can move: revalidate soon
VERSION_CACHE_CONTROL = "public, max-age=31536000, immutable"  # ?version=N never changes


class ScheduleNotFound(ErrorBody):
    """A 404: what is missing, and the NFEs that do have a schedule for (model, solver)."""

    available_nfes: list[int]


NOT_FOUND = documented({404: "No such schedule or version; `available_nfes` lists the NFEs that have one"},
                       ScheduleNotFound)


class BodyCache:
    """Serialized export bodies and ETags per (version id, format): versions are immutable."""

    def __init__(self, size: int = 4096) -> None:
        self.size, self.items, self.lock = size, OrderedDict[tuple[int, str], tuple[bytes, str]](), Lock()

    def get(self, key: tuple[int, str]) -> tuple[bytes, str] | None:
        hit = self.items.get(key)
        if hit is not None:
            with self.lock:
                if key in self.items:
                    self.items.move_to_end(key)
        return hit

    def put(self, key: tuple[int, str], body: bytes) -> tuple[bytes, str]:
        etag = '"' + hashlib.sha256(f"{key[0]}/{key[1]}".encode()).hexdigest()[:32] + '"'
        with self.lock:
            self.items[key] = (body, etag)
            while len(self.items) > self.size:
                self.items.popitem(last=False)
        return body, etag


def _body(state: Any, version_id: int, fmt: str) -> tuple[bytes, str]:
    """(body, ETag) of a version in ``fmt``: rendered the first time this process serves it."""
    cache: BodyCache = state.schedule_cache
    hit = cache.get((version_id, fmt))
    if hit is None:
        with state.session_factory() as s:
            hit = cache.put((version_id, fmt), _render(s, version_id, fmt))
    return hit


def _render(s: Session, version_id: int, fmt: str) -> bytes:
    """The response body of one version in one format (``raw``: every stored field and the provenance)."""
    row = q.get_version_by_id(s, version_id)
    try:
        out = exports.export(row, fmt)
    except ValueError as e:
        raise HTTPException(422, detail=[field_error(["query", "format"], f"format: cannot export version {row.version} as {fmt}: {e}")]) from e
    if fmt == "raw":
        public = ScheduleVersionPublic.from_row(row, active=False).model_dump(mode="json", exclude={"active"})
        out["payload"] = {**out["payload"], **public}
    return ScheduleExport(**out).model_dump_json().encode()


def _not_found(s: Session, model: str, solver: str, nfe: int, guidance: float | None, version: int | None) -> JSONResponse:
    """404 naming what is missing and the NFEs that do have a schedule for (model, solver)."""
    if model_q.get_model(s, model) is None:
        known = [m.key for m in model_q.list_models(s)]
        return JSONResponse(status_code=404, content={"detail": f"unknown model {model!r}; known models: {known}", "available_nfes": []})
    nfes = q.available_nfes(s, model, solver)
    where = f"{model}/{solver}/{nfe}" + ("" if guidance is None else f" at guidance {guidance}")
    if version is not None:
        have = [v.version for v in q.list_versions(s, model, solver, nfe, guidance)]
        msg = f"no version {version} of the schedule {where}; versions: {have}"
    else:
        msg = f"no schedule for {where}"
    msg += f"; NFEs with a schedule for {model}/{solver}: {nfes if nfes else 'none'}"
    return JSONResponse(status_code=404, content={"detail": msg, "available_nfes": nfes})


def _not_found_response(state: Any, *args: Any) -> JSONResponse:
    with state.session_factory() as s:
        return _not_found(s, *args)


_IF_NONE_MATCH = {"name": "If-None-Match", "in": "header", "required": False, "schema": {"type": "string"},
                  "description": "ETag(s) of a copy the client holds: 304 if one is current"}


@router.get("/{model}/{solver}/{nfe}", response_model=ScheduleExport, openapi_extra={"parameters": [_IF_NONE_MATCH]},
            responses={304: {"description": "Not modified (If-None-Match matched the ETag)"}, **NOT_FOUND,
                       503: {"description": "The database is unreachable and this process has nothing to serve from "
                                            "its cache; `Retry-After` says when to try again"}})
async def get_schedule(
    request: Request, caller: ReadDep, model: Model, solver: Solver, nfe: Nfe,
    version: VersionQuery = None,
    format: Annotated[ExportFormat, Query(description="raw | diffusers | k-diffusion | comfyui")] = "raw",
    guidance: Guidance = None,
) -> Response:
    """The active version (or ``?version=``) in the asked format, with ETag and Cache-Control.

    ``If-None-Match`` is read from the headers directly (a declared Header parameter costs more
    than the whole database lookup on this path). The database unreachable: what this process
    resolved within ``LD3_STALE_GRACE_S``, with ``X-LD3-Stale: true``."""
    state = request.app.state
    version_id, stale = await state.version_lookup.resolve(model, solver, nfe, guidance, version)  # api.lookup: one indexed query
    if version_id is None:
        return await run_in_threadpool(_not_found_response, state, model, solver, nfe, guidance, version)
    hit = state.schedule_cache.get((version_id, format))
    body, etag = hit if hit is not None else await run_in_threadpool(_body, state, version_id, format)
    if_none_match = request.headers.get("if-none-match")
    headers = {"ETag": etag, "Cache-Control": ACTIVE_CACHE_CONTROL if version is None else VERSION_CACHE_CONTROL}
    if stale or caller.stale:
        headers[STALE_HEADER] = "true"
    if if_none_match is not None and (if_none_match.strip() == "*" or etag in {t.strip() for t in if_none_match.split(",")}):
        return Response(status_code=304, headers=headers)
    return Response(content=body, media_type="application/json", headers=headers)


@router.get("/{model}/{solver}/{nfe}/versions", response_model=list[ScheduleVersionPublic], responses=NOT_FOUND)
def list_schedule_versions(s: SessionDep, _: ReadDep, model: Model, solver: Solver, nfe: Nfe,
                           guidance: Guidance = None) -> Any:
    """Every version of (model, solver, nfe[, guidance]), oldest first; ``active`` marks the served one."""
    rows = q.list_versions(s, model, solver, nfe, guidance)
    if not rows:
        return _not_found(s, model, solver, nfe, guidance, None)
    active = q.get_active(s, model, solver, nfe, guidance)
    return [ScheduleVersionPublic.from_row(r, active=active is not None and r.id == active.id) for r in rows]


@router.post("/{model}/{solver}/{nfe}/versions/{version}/promote", response_model=ScheduleVersionPublic,
             responses=NOT_FOUND)
def promote_version(request: Request, s: SessionDep, admin: AdminDep, model: Model, solver: Solver, nfe: Nfe,
                    version: Version, guidance: Guidance = None) -> Any:
    """Serve ``version`` from now on (admin). Rollback is the promotion of an older version."""
    row = q.get_version(s, model, solver, nfe, version, guidance)
    if row is None:
        return _not_found(s, model, solver, nfe, guidance, version)
    q.promote(s, row.id, actor=admin.name)
    s.commit()
    request.app.state.version_lookup.forget_active()
    return ScheduleVersionPublic.from_row(row, active=True)


__all__ = ["router", "BodyCache"]
