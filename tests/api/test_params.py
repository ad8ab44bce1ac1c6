"""api.params: a path or query parameter the database cannot hold is a 422 naming it, never a 500.

PostgreSQL refuses a NUL character in text and an integer beyond its column (32-bit ids and
version numbers, a 64-bit OFFSET); SQLite an integer beyond 64 bits. Each case below was a 500
(and on the schedule route cost the lookup a pooled connection).
"""

from __future__ import annotations

import pytest
from api_support import ADMIN

NUL = "must not contain a NUL character"
ABOVE_INT32 = "less than or equal to 2147483647"
ABOVE_INT64 = "less than or equal to 9223372036854775807"

REFUSED = [
    ("GET", "/jobs?offset=9223372036854775808", ["query", "offset"], ABOVE_INT64),
    ("GET", "/jobs?model=%00", ["query", "model"], NUL),
    ("GET", "/jobs/%00", ["path", "job_id"], NUL),
    ("POST", "/jobs/%00/cancel", ["path", "job_id"], NUL),
    ("POST", "/jobs/%00/retry", ["path", "job_id"], NUL),
    ("GET", "/models/%00", ["path", "key"], NUL),
    ("GET", "/schedules/%00/unipc/5", ["path", "model"], NUL),
    ("GET", "/schedules/ddpm-digits/unipc/5?version=2147483648", ["query", "version"], ABOVE_INT32),
    ("GET", "/schedules/%00/unipc/5/versions", ["path", "model"], NUL),
    ("POST", "/schedules/ddpm-digits/unipc/5/versions/2147483648/promote", ["path", "version"], ABOVE_INT32),
    ("GET", "/schedules/ddpm-digits/unipc/5/versions/2147483648/samples.png", ["path", "version"], ABOVE_INT32),
    ("GET", "/schedules/%00/unipc/5/versions/1/samples.png", ["path", "model"], NUL),
    ("GET", "/dashboard/api/versions/2147483648", ["path", "version_id"], ABOVE_INT32),
    ("DELETE", "/keys/2147483648", ["path", "key_id"], ABOVE_INT32),
]


@pytest.mark.parametrize("method, url, loc, reason", REFUSED, ids=[f"{m} {u}" for m, u, _, _ in REFUSED])
def test_a_parameter_the_database_cannot_hold_is_a_422_naming_it(client, method, url, loc, reason):
    r = client.request(method, url, headers=ADMIN)
    assert r.status_code == 422, r.text
    (err,) = [e for e in r.json()["detail"] if e["loc"] == loc]
    assert err["msg"].startswith(f"{loc[1]}: ") and reason in err["msg"], err


def test_the_largest_values_the_columns_hold_are_answered(client, add_version):
    add_version(5)
    assert client.get("/jobs?offset=9223372036854775807", headers=ADMIN).json()["data"] == []
    assert client.get("/schedules/ddpm-digits/unipc/5?version=2147483647", headers=ADMIN).status_code == 404
    assert client.get("/schedules/ddpm-digits/unipc/5?version=1", headers=ADMIN).status_code == 200
    assert client.get("/dashboard/api/versions/2147483647", headers=ADMIN).status_code == 404


REPEATED = [
    ("GET", "/jobs?model=ddpm-digits&model=digits-flow", "model", 2),
    ("GET", "/jobs?state=queued&limit=5&state=failed&state=running", "state", 3),
    ("GET", "/schedules/ddpm-digits/unipc/5?version=1&version=2", "version", 2),
    ("GET", "/schedules/ddpm-digits/unipc/5?format=raw&format=diffusers", "format", 2),
    ("GET", "/schedules/ddpm-digits/unipc/5/versions?guidance=1&guidance=2", "guidance", 2),
    ("POST", "/schedules/ddpm-digits/unipc/5/versions/1/promote?guidance=1&guidance=1", "guidance", 2),
]


@pytest.mark.parametrize("method, url, name, times", REPEATED, ids=[f"{m} {u}" for m, u, _, _ in REPEATED])
def test_a_repeated_single_valued_query_parameter_is_a_422_naming_it(client, method, url, name, times):
    r = client.request(method, url, headers=ADMIN)
    assert r.status_code == 422, r.text
    (err,) = r.json()["detail"]
    assert err["loc"] == ["query", name] and err["msg"] == f"{name}: given {times} times; it takes one value"


def test_a_repeated_unknown_query_parameter_is_ignored_like_any_unknown_one(client):
    assert client.get("/jobs?utm=a&utm=b", headers=ADMIN).status_code == 200
    assert client.get("/jobs?model=ddpm-digits", headers=ADMIN).status_code == 200


def test_only_multi_valued_types_take_many():
    from typing import Optional

    from api.params import _takes_many

    assert _takes_many(list[int]) and _takes_many(Optional[list[str]]) and _takes_many(set[str] | None)
    assert not _takes_many(int) and not _takes_many(str | None) and not _takes_many(Optional[float])
