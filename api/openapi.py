"""The OpenAPI schema: the key schemes, and the answers a route gives besides its own.

A route documents its own errors (404, 409, 503) with ``errors.documented``; what follows from
how a route is built is added here, read off the route itself, so that the schema cannot drift
from the code:
- the key schemes where a route authenticates (``api.auth.authenticate``, directly or through
  ``require``), with a 401, and a 403 where it needs a scope; no key anywhere else;
- 413 on every route: ``api.body_limit`` refuses an oversized body before any route runs;
- 503 where a route reads the database (a session or a key check): ``api.outage`` answers it
  while the database is unreachable;
- 422 (``errors.ValidationErrorBody``, our body, not FastAPI's) where a route takes parameters
  or a body.
"""

from __future__ import annotations

from typing import Any, Iterator

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from .auth import SECURITY_SCHEMES, authenticate
from .deps import get_db
from .errors import ErrorBody, ValidationErrorBody

UNAUTHORIZED = "Missing, unknown or revoked API key"
FORBIDDEN = "The key lacks the scope this route needs (`detail` names it)"
TOO_LARGE = "The request body is larger than the limit (LD3_MAX_BODY_BYTES, named in `detail`)"
INVALID = "A bad input: each entry of `detail` names the field and the reason"
DATABASE_DOWN = "The database is unreachable (`detail` says so; `Retry-After` says when to try again)"
_REF = "#/components/schemas/{model}"


def _dependants(dependant: Dependant) -> Iterator[Dependant]:
    """A route's dependant and its dependencies', nested ones included."""
    yield dependant
    for dep in dependant.dependencies:
        yield from _dependants(dep)


def shared_responses(route: Any) -> tuple[bool, dict[str, str]]:
    """(whether ``route`` takes a key, {status: description}) of the answers it gives by how it is
    built: 401/403 by its key check, 413, 422 by its inputs, 503 by its database use."""
    dependants = list(_dependants(route.dependant))
    calls = [d.call for d in dependants]
    scoped = any(getattr(c, "scope", None) for c in calls)  # api.auth.require(scope)'s check
    keyed = scoped or authenticate in calls
    out = {"413": TOO_LARGE}
    if keyed:
        out["401"] = UNAUTHORIZED
    if scoped:
        out["403"] = FORBIDDEN
    if keyed or get_db in calls:
        out["503"] = DATABASE_DOWN
    if route.body_field is not None or any(d.path_params or d.query_params or d.header_params or d.cookie_params
                                           for d in dependants):
        out["422"] = INVALID
    return keyed, out


def _body(model: type, description: str) -> dict[str, Any]:
    ref = {"$ref": _REF.format(model=model.__name__)}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


def build_schema(app: FastAPI) -> dict[str, Any]:
    """FastAPI's schema of ``app`` with the key schemes and every route's shared answers."""
    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {})
    components["securitySchemes"] = SECURITY_SCHEMES
    schema["security"] = [{name: []} for name in SECURITY_SCHEMES]
    schemas = components.setdefault("schemas", {})
    for model in (ErrorBody, ValidationErrorBody):
        body = model.model_json_schema(ref_template=_REF)
        schemas.update(body.pop("$defs", {}))
        schemas[model.__name__] = body
    for context in iter_route_contexts(app.routes):
        if not isinstance(context.original_route, APIRoute) or not context.include_in_schema:
            continue
        keyed, shared = shared_responses(context)
        for method in context.methods:
            op = schema["paths"][context.path_format][method.lower()]
            if not keyed:
                op["security"] = []
            for status, text in shared.items():
                if status == "422":  # ours, not FastAPI's HTTPValidationError
                    op["responses"][status] = _body(ValidationErrorBody, text)
                else:
                    op["responses"].setdefault(status, _body(ErrorBody, text))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def install(app: FastAPI) -> None:
    """Serve ``build_schema(app)`` (built once, on the first request for it)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_schema(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


__all__ = ["install", "build_schema", "shared_responses"]
