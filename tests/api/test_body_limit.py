"""api.body_limit: a request body past LD3_MAX_BODY_BYTES is a 413 naming the limit, before anything else.

An unauthenticated 100 MB POST /jobs was read whole before its 401 (19.5 s, 1.6 GB). The app is
driven here as an ASGI callable too, so that a test sees how many body chunks were pulled.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from api_support import ADMIN

LIMIT = 1024
CHUNK = 256
NAMES_THE_LIMIT = f"limit of {LIMIT} bytes (LD3_MAX_BODY_BYTES)"


@pytest.fixture
def app(make_client):
    return make_client(max_body_bytes=LIMIT).app


def post_chunks(app, path: str, *, headers: dict[str, str] | None = None, chunks: int = 1000):
    """POST ``chunks`` chunks of CHUNK bytes straight into the ASGI app: (status, headers, body, chunks pulled)."""
    pulled, sent = 0, []

    async def receive():
        nonlocal pulled
        if pulled == chunks:
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": b" " * CHUNK, "more_body": pulled < chunks}

    async def send(message):
        sent.append(message)

    raw = [(k.lower().encode(), v.encode()) for k, v in {"content-type": "application/json", **(headers or {})}.items()]
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw,
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    asyncio.run(app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], dict(start["headers"]), json.loads(body), pulled


def test_a_declared_length_over_the_limit_is_refused_before_a_byte_is_read(app):
    status, headers, body, pulled = post_chunks(app, "/jobs", headers={"content-length": str(LIMIT + 1)})
    assert (status, pulled) == (413, 0)  # not 401: nothing else ran
    assert NAMES_THE_LIMIT in body["detail"] and headers[b"connection"] == b"close"


def test_a_body_without_a_length_is_cut_at_the_limit(app):
    status, _, body, pulled = post_chunks(app, "/jobs")  # chunked: 250 KB on offer, no key
    assert status == 413 and NAMES_THE_LIMIT in body["detail"]
    assert pulled == LIMIT // CHUNK + 1  # the first chunk past the limit, and no more


def test_a_length_that_lies_does_not_get_round_the_limit(app):
    status, _, body, pulled = post_chunks(app, "/jobs", headers={"content-length": "10", "x-api-key": ADMIN["X-API-Key"]})
    assert (status, pulled) == (413, LIMIT // CHUNK + 1) and NAMES_THE_LIMIT in body["detail"]


def test_over_http_with_and_without_a_length(make_client):
    client = make_client(max_body_bytes=LIMIT)
    for r in (client.post("/jobs", content=b"x" * (LIMIT + 1)),
              client.post("/jobs", content=(b"x" * CHUNK for _ in range(8)))):  # a generator: chunked, no length
        assert r.status_code == 413, r.text
        assert NAMES_THE_LIMIT in r.json()["detail"]


def test_a_body_within_the_limit_still_works(make_client):
    client = make_client(max_body_bytes=LIMIT)
    job = json.dumps({"model": "ddpm-digits", "solver": "unipc", "nfe": 5}).encode()
    r = client.post("/jobs", content=job.ljust(LIMIT), headers={**ADMIN, "content-type": "application/json"})
    assert r.status_code == 201, r.text  # exactly the limit is allowed


def test_the_default_limit_is_one_mebibyte(make_client):
    client = make_client()
    r = client.post("/jobs", content=b"x" * (2**20 + 1))
    assert r.status_code == 413 and "limit of 1048576 bytes" in r.json()["detail"]
