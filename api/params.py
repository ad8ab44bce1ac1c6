"""Path and query parameters the routes share, bounded by what the database can hold.

A value the database would refuse is a 422 naming the parameter (``api.errors``), never a 500
from the driver: a NUL character in text (PostgreSQL text cannot store one), an integer beyond
its column (32-bit ids and version numbers, a 64-bit OFFSET; SQLite's integers are 64 bits).
The bounds and the NUL rule are ``registry.schemas``'s, which the request bodies use too.

A single-valued query parameter given more than once (``?model=a&model=b``) is a 422 naming it,
for every route (``refuse_repeated_query``, an app-wide dependency): FastAPI would silently keep
the last value.
"""

from __future__ import annotations

from collections import Counter
from types import UnionType
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Path, Query, Request
from fastapi.exceptions import RequestValidationError
from pydantic import Field, StringConstraints

from registry import solvers
from registry.schemas import INT32_MAX, INT64_MAX, KnownSolver, NoNul

# Column ranges.
Int32 = Annotated[int, Field(ge=-INT32_MAX - 1, le=INT32_MAX)]
Int64 = Annotated[int, Field(ge=-INT64_MAX - 1, le=INT64_MAX)]
# Text columns; the length rules come before NoNul so that their messages stay pydantic's own.
CatalogKey = Annotated[str, StringConstraints(max_length=128), NoNul]
JobIdText = Annotated[str, StringConstraints(min_length=1, max_length=64), NoNul]

Model = Annotated[CatalogKey, Path(description="catalog key")]
Solver = Annotated[KnownSolver, Path(description="solver name")]
Nfe = Annotated[int, Path(ge=1, le=solvers.MAX_NFE, description="network evaluations")]
Guidance = Annotated[float | None, Query(ge=0, le=100, allow_inf_nan=False, description="guidance scale, if the schedule has one")]
Version = Annotated[Int32, Path(ge=1, description="the version number")]
VersionQuery = Annotated[Int32 | None, Query(ge=1, description="a specific version (default: the active one)")]
VersionId = Annotated[Int32, Path(ge=1, description="a schedule version's id (a job's schedule_version_id)")]
JobId = Annotated[JobIdText, Path(description="job id")]
KeyId = Annotated[Int32, Path(ge=1, description="the key's id (from GET /keys)")]
ModelFilter = Annotated[CatalogKey | None, Query(description="filter by model key")]
Offset = Annotated[Int64, Query(ge=0, description="jobs to skip")]

MULTI_VALUED = (list, set, tuple, frozenset)


def _takes_many(annotation: Any) -> bool:
    """Whether a query parameter's type holds several values (``list[int]``, ``list[str] | None``)."""
    options = get_args(annotation) if get_origin(annotation) in (Union, UnionType) else (annotation,)
    return any(o in MULTI_VALUED or get_origin(o) in MULTI_VALUED for o in options)


def single_valued_query(route: Any) -> set[str]:
    """The names of ``route``'s query parameters that take one value (its dependencies' included)."""
    names, todo = set(), [route.dependant]
    while todo:
        dependant = todo.pop()
        todo += dependant.dependencies
        names |= {f.alias for f in dependant.query_params if not _takes_many(f.field_info.annotation)}
    return names


async def refuse_repeated_query(request: Request) -> None:
    """422 naming each single-valued query parameter given more than once (app-wide dependency)."""
    if not request.scope.get("query_string"):
        return
    counts = Counter(name for name, _ in request.query_params.multi_items())
    repeated = {name: n for name, n in counts.items() if n > 1}
    route = request.scope.get("route")
    if not repeated or not hasattr(route, "dependant"):
        return
    errors = [{"loc": ("query", name), "msg": f"given {n} times; it takes one value", "type": "repeated_parameter"}
              for name, n in repeated.items() if name in single_valued_query(route)]
    if errors:
        raise RequestValidationError(errors)


__all__ = ["refuse_repeated_query", "single_valued_query", "Int32", "Int64", "CatalogKey", "Model", "Solver", "Nfe",
           "Guidance", "Version", "VersionQuery", "VersionId", "JobId", "KeyId", "ModelFilter", "Offset"]
