"""Path and query parameters the routes share, bounded by what the database can hold.

A value the database would refuse is a 422 naming the parameter (``api.errors``), never a 500
from the driver: a NUL character in text (PostgreSQL text cannot store one), an integer beyond
its column (32-bit ids and version numbers, a 64-bit OFFSET; SQLite's integers are 64 bits).
The bounds and the NUL rule are ``registry.schemas``'s, which the request bodies use too.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Path, Query
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

__all__ = ["Int32", "Int64", "CatalogKey", "Model", "Solver", "Nfe", "Guidance", "Version", "VersionQuery", "VersionId",
           "JobId", "KeyId", "ModelFilter", "Offset"]
