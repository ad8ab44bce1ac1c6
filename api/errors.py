"""Error bodies: every 4xx names the field and the reason.

FastAPI's default 422 body echoes the raw pydantic errors (with the offending input and a docs
URL). Ours keeps ``{"detail": [{"loc": [...], "msg": "..."}]}`` with a message that reads on
its own, and says what was wrong with malformed JSON, or with a body that cannot be read as JSON
at all (not UTF-8, nested too deeply: FastAPI's parser answers those with a bare 400). ``ErrorBody`` and ``ValidationErrorBody``
are those bodies in the OpenAPI schema; a route documents its own errors with ``documented``.
"""

from __future__ import annotations

import re
from typing import Any, Sequence

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.exceptions import HTTPException


class FieldError(BaseModel):
    """One bad input: where it is (``["body", "options", "lr_x"]``) and why, the field named in ``msg``."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorBody(BaseModel):
    """An error answer: ``detail`` says what went wrong, as a message or one entry per bad field."""

    detail: str | list[FieldError]


class ValidationErrorBody(BaseModel):
    """A 422: one entry per bad input, each naming the field and the reason."""

    detail: list[FieldError]


def documented(errors: dict[int, str], model: type[BaseModel] = ErrorBody) -> dict[int | str, dict[str, Any]]:
    """A route's ``responses=`` for its own error statuses: ``{404: "No job has this id"}``."""
    return {status: {"model": model, "description": text} for status, text in errors.items()}


# registry.catalog.ModelSpec names the field in its message: put it in ``loc`` too.
_SPEC_FIELD = re.compile(r"^model spec field '(\w+)': ")


def field_error(loc: Sequence[str | int], msg: str, *, type: str = "value_error") -> dict[str, Any]:
    """One entry of a 4xx ``detail`` list."""
    return {"loc": list(loc), "msg": msg, "type": type}


def _field_name(loc: Sequence[str | int]) -> str:
    parts = [str(p) for p in loc[1:]] if loc and loc[0] in ("body", "query", "path", "header") else [str(p) for p in loc]
    return ".".join(parts) or "body"


def readable(err: dict[str, Any]) -> dict[str, Any]:
    """A pydantic error as ``{"loc", "msg", "type"}`` with a message naming the field."""
    loc, kind = list(err.get("loc", ())), err.get("type", "value_error")
    msg = str(err.get("msg", "invalid value"))
    if kind == "json_invalid":
        reason = (err.get("ctx") or {}).get("error", "")
        position = loc[1] if len(loc) > 1 else "?"
        return field_error(["body"], f"malformed JSON at character {position}: {reason}".rstrip(": "), type=kind)
    if kind == "extra_forbidden":
        msg = "unknown field (not accepted here)"
    elif kind == "missing":
        msg = "required field is missing"
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, "):]
    if m := _SPEC_FIELD.match(msg):
        loc = [*loc, m.group(1)] if m.group(1) not in loc else loc
        msg = msg[m.end():]
    return field_error(loc, f"{_field_name(loc)}: {msg}", type=kind)


async def _validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse(status_code=422, content={"detail": jsonable_encoder([readable(e) for e in exc.errors()])})


def _unreadable(cause: BaseException) -> str:
    if isinstance(cause, UnicodeDecodeError):
        return f"body: not UTF-8 (byte 0x{cause.object[cause.start]:02x} at position {cause.start}); send JSON in UTF-8"
    if isinstance(cause, RecursionError):
        return "body: JSON nested too deeply to parse"
    return f"body: cannot be parsed as JSON ({cause})"


async def _http_handler(request: Request, exc: HTTPException) -> Any:
    """FastAPI's answer, except a body its parser could not read: a 422 saying why (it answers a bare 400)."""
    cause = exc.__cause__
    if exc.status_code == 400 and isinstance(cause, (ValueError, RecursionError)):
        return JSONResponse(status_code=422, content={"detail": [field_error(["body"], _unreadable(cause), type="json_invalid")]})
    return await http_exception_handler(request, exc)


def install(app: FastAPI) -> None:
    """Register the readable validation-error handlers."""
    app.add_exception_handler(RequestValidationError, _validation_handler)
    app.add_exception_handler(HTTPException, _http_handler)
