"""Requests drawn from the app's own OpenAPI schema, and a check of responses against it.

``requests_for(spec, operation, hints)`` is a hypothesis strategy of requests for one operation:
parameters and JSON bodies built from their schemas (the JSON-schema subset pydantic writes:
$ref, anyOf, enum, const, pattern, lengths, bounds, uniqueItems, objects with or without
additionalProperties), mostly valid, sometimes not: any JSON value in place of a field, an
unknown field, a body that is not JSON. ``hints`` maps a parameter or field name to values
that exist (a model key, a job id), so that requests reach past the 404s.
``mismatches(schema, value, spec)`` lists where a response body departs from its schema.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import quote

from hypothesis import strategies as st

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
ANY_JSON = st.recursive(JSON_SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                        max_leaves=6)
HEADER_TEXT = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=40)
MAX_TEXT, MAX_ITEMS = 40, 4


def resolve(schema: dict, spec: dict) -> dict:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def values(schema: dict, spec: dict, hint: list | None = None, *, valid_only: bool = False) -> st.SearchStrategy:
    """Values for ``schema``: valid ones, known-good ``hint`` values, and (unless ``valid_only``) junk."""
    good = _valid(resolve(schema, spec), spec)
    if hint:
        good = st.sampled_from(hint) | good
    return good if valid_only else st.one_of(good, good, good, ANY_JSON)


def _valid(schema: dict, spec: dict) -> st.SearchStrategy:
    if "anyOf" in schema:
        return st.one_of([values(s, spec, valid_only=True) for s in schema["anyOf"]])
    if "const" in schema:
        return st.just(schema["const"])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "string":
        if "pattern" in schema:
            return st.from_regex(schema["pattern"], fullmatch=True).filter(lambda s: len(s) <= schema.get("maxLength", 10**9))
        low = schema.get("minLength", 0)
        return st.text(min_size=low, max_size=max(low, min(schema.get("maxLength", MAX_TEXT), MAX_TEXT)))
    if kind == "integer":
        low = schema.get("minimum", schema["exclusiveMinimum"] + 1 if "exclusiveMinimum" in schema else None)
        high = schema.get("maximum", schema["exclusiveMaximum"] - 1 if "exclusiveMaximum" in schema else None)
        return st.integers(None if low is None else math.ceil(low), None if high is None else math.floor(high))
    if kind == "number":
        return st.floats(schema.get("minimum", schema.get("exclusiveMinimum")),
                         schema.get("maximum", schema.get("exclusiveMaximum")),
                         exclude_min="exclusiveMinimum" in schema, exclude_max="exclusiveMaximum" in schema,
                         allow_nan=False, allow_infinity=False)
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        low = schema.get("minItems", 0)
        items = values(schema.get("items", {}), spec, valid_only=True)
        return st.lists(items, min_size=low, max_size=max(low, min(schema.get("maxItems", MAX_ITEMS), MAX_ITEMS)),
                        unique_by=(lambda v: json.dumps(v, sort_keys=True)) if schema.get("uniqueItems") else None)
    if kind == "object" or "properties" in schema:
        return objects(schema, spec, {}, valid_only=True)
    return ANY_JSON


def objects(schema: dict, spec: dict, hints: dict[str, list], *, valid_only: bool = False) -> st.SearchStrategy:
    """Objects of ``schema``: every required property, each optional one or not, sometimes an unknown one."""
    schema = resolve(schema, spec)
    props, required = schema.get("properties", {}), set(schema.get("required", []))
    if not props:
        return st.dictionaries(st.text(max_size=8), ANY_JSON, max_size=3)

    @st.composite
    def draw(draw_: st.DrawFn) -> dict:
        out = {}
        for name, sub in props.items():
            if name in required or draw_(st.booleans()):
                out[name] = draw_(values(sub, spec, hints.get(name), valid_only=valid_only))
        if not valid_only and draw_(st.integers(0, 9)) == 0:
            out[draw_(st.text(min_size=1, max_size=8))] = draw_(ANY_JSON)
        return out

    return draw()


def path_segment(schema: dict, spec: dict, hint: list | None) -> st.SearchStrategy:
    """A path parameter as its URL segment: never empty, '.', '..' or holding '/' (another route's path)."""
    text = values(schema, spec, hint).map(lambda v: v if isinstance(v, str) else json.dumps(v))
    return text.filter(lambda s: s not in ("", ".", "..") and "/" not in s).map(lambda s: quote(s, safe=""))


def query_value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value).strip('"')


@st.composite
def requests_for(draw: st.DrawFn, spec: dict, path: str, method: str, hints: dict[str, list]) -> dict:
    """One request for the operation (path, method): {"method", "url", "params", "headers", "content"}."""
    op = spec["paths"][path][method]
    url, params, headers = path, {}, {}
    for p in op.get("parameters", []):
        name, schema, where = p["name"], p.get("schema", {}), p["in"]
        if where == "path":
            url = url.replace("{" + name + "}", draw(path_segment(schema, spec, hints.get(name))))
        elif where == "query" and (p.get("required") or draw(st.booleans())):
            params[name] = query_value(draw(values(schema, spec, hints.get(name))))
        elif where == "header" and draw(st.booleans()):
            headers[name] = draw(HEADER_TEXT)
    content = None
    if "requestBody" in op:
        body = op["requestBody"]["content"]["application/json"]["schema"]
        content = draw(st.one_of(objects(body, spec, hints).map(lambda o: json.dumps(o).encode()),
                                 objects(body, spec, hints).map(lambda o: json.dumps(o).encode()),
                                 st.binary(max_size=12)))
        headers["Content-Type"] = "application/json"
    return {"method": method.upper(), "url": url, "params": params, "headers": headers, "content": content}


def mismatches(schema: dict, value: Any, spec: dict, at: str = "body") -> list[str]:
    """Where ``value`` departs from ``schema`` (types, required and unknown properties, enums, anyOf)."""
    schema = resolve(schema, spec)
    if "anyOf" in schema:
        tries = [mismatches(s, value, spec, at) for s in schema["anyOf"]]
        return [] if any(not t for t in tries) else [f"{at}: matches no anyOf branch ({min(tries, key=len)})"]
    if "enum" in schema and value not in schema["enum"]:
        return [f"{at}: {value!r} not in {schema['enum']}"]
    kind = schema.get("type")
    checks = {"string": lambda v: isinstance(v, str), "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
              "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool), "boolean": lambda v: isinstance(v, bool),
              "null": lambda v: v is None, "array": lambda v: isinstance(v, list), "object": lambda v: isinstance(v, dict)}
    if kind in checks and not checks[kind](value):
        return [f"{at}: {value!r} is not {kind}"]
    out = []
    if kind == "array":
        for i, item in enumerate(value):
            out += mismatches(schema.get("items", {}), item, spec, f"{at}[{i}]")
    if isinstance(value, dict) and "properties" in schema:
        props = schema["properties"]
        out += [f"{at}.{name}: required, missing" for name in schema.get("required", []) if name not in value]
        if schema.get("additionalProperties") is False:
            out += [f"{at}.{name}: not in the schema" for name in value if name not in props]
        for name, item in value.items():
            if name in props:
                out += mismatches(props[name], item, spec, f"{at}.{name}")
    return out


__all__ = ["requests_for", "mismatches", "resolve"]
