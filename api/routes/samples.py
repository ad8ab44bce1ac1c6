"""``GET /schedules/{model}/{solver}/{nfe}/versions/{version}/samples.png``: a version's sample grid.

The worker draws it at evaluation time for image models: the best heuristic's samples above,
the learned schedule's below, from the same seeds. Versions are immutable, so the grid is too.
"""

from __future__ import annotations

from fastapi import APIRouter, HTTPException
from fastapi.responses import Response

from registry import schedules as q

from ..auth import ReadDep
from ..deps import SessionDep
from ..errors import documented
from ..params import Guidance, Model, Nfe, Solver, Version

router = APIRouter(prefix="/schedules", tags=["schedules"])


@router.get("/{model}/{solver}/{nfe}/versions/{version}/samples.png", response_class=Response,
            responses={200: {"content": {"image/png": {}}}, **documented({404: "No such version, or it has no sample grid"})})
def version_samples(s: SessionDep, _: ReadDep, model: Model, solver: Solver, nfe: Nfe, version: Version,
                    guidance: Guidance = None) -> Response:
    """The version's sample grid: the best heuristic's samples above, the learned schedule's below."""
    row = q.get_version(s, model, solver, nfe, version, guidance, samples=True)
    if row is None:
        raise HTTPException(404, detail=f"no version {version} of the schedule {model}/{solver}/{nfe}")
    if row.samples_png is None:
        raise HTTPException(404, detail=f"version {version} of {model}/{solver}/{nfe} has no sample grid "
                                        "(the model's samples are not images, or drawing them failed)")
    return Response(row.samples_png, media_type="image/png",
                    headers={"Cache-Control": "private, max-age=31536000, immutable"})


__all__ = ["router"]
