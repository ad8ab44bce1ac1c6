"""Every bad input is a 422 whose body is {"detail": [{"loc", "msg"}]} naming the field and the reason."""

from __future__ import annotations

import pytest
from api_support import ADMIN

from api.errors import readable

JOB = {"model": "ddpm-digits", "solver": "unipc", "nfe": 5}


def _errors(r) -> dict[str, str]:
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, list) and detail
    for e in detail:
        assert set(e) == {"loc", "msg", "type"} and isinstance(e["loc"], list) and e["msg"]
    return {".".join(map(str, e["loc"])): e["msg"] for e in detail}


def test_malformed_json_says_so_and_where(client):
    r = client.post("/jobs", content=b'{"model": "ddpm-digits", ', headers={**ADMIN, "Content-Type": "application/json"})
    errs = _errors(r)
    assert list(errs) == ["body"] and errs["body"].startswith("malformed JSON at character 25")


def test_a_body_that_cannot_be_read_as_json_is_a_422_saying_why(client, queue):
    """Found by test_openapi_conformance: FastAPI's parser answered these with an undocumented bare 400."""
    json_type = {**ADMIN, "Content-Type": "application/json"}
    for body, words in ((b"\x80", "not UTF-8 (byte 0x80 at position 0)"), (b"[" * 100_000, "nested too deeply")):
        r = client.post("/jobs", content=body, headers=json_type)
        assert words in _errors(r)["body"], r.text
    assert client.post("/keys", content=b"{\"name\": \"\xff\"}", headers=json_type).status_code == 422
    assert queue.ids == []


def test_a_body_that_is_not_an_object(client):
    errs = _errors(client.post("/jobs", json=[1, 2], headers=ADMIN))
    assert "body" in errs and "dictionary" in errs["body"]


@pytest.mark.parametrize("body,field,words", [
    ({**JOB, "solver": "rk45"}, "body.solver", ["unknown solver 'rk45'", "unipc"]),
    ({**JOB, "nfe": 0}, "body.nfe", ["nfe:", "greater than or equal to 1"]),
    ({**JOB, "nfe": "five"}, "body.nfe", ["nfe:", "integer"]),
    ({**JOB, "solver": "heun", "nfe": 2}, "body.nfe", ["heun needs an NFE between 3"]),
    ({**JOB, "solver": "heun", "nfe": 4}, "body.nfe", ["NFE 4 would learn 2 steps", "nearest valid NFEs: 3, 5"]),
    ({"solver": "unipc", "nfe": 5}, "body.model", ["model: required field is missing"]),
    ({**JOB, "colour": "red"}, "body.colour", ["colour: unknown field"]),
    ({**JOB, "options": {"n_trian": 5}}, "body.options.n_trian", ["options.n_trian: unknown field"]),
    ({**JOB, "options": {"loss": "ssim"}}, "body.options.loss", ["options.loss:", "'lpips'"]),
    ({**JOB, "options": {"seed": -1}}, "body.options.seed", ["options.seed:", "greater than or equal to 0"]),
    ({**JOB, "options": {"teacher_solver": "rk4"}}, "body.options.teacher_solver", ["unknown solver 'rk4'"]),
])
def test_bad_job_fields_are_named_with_the_reason(client, queue, body, field, words):
    errs = _errors(client.post("/jobs", json=body, headers=ADMIN))
    assert field in errs, errs
    for w in words:
        assert w in errs[field], errs[field]
    assert queue.ids == []


def test_several_bad_fields_are_all_reported(client):
    errs = _errors(client.post("/jobs", json={"model": "ddpm-digits", "solver": "rk45", "nfe": 1000, "options": {"x": 1}},
                               headers=ADMIN))
    assert {"body.solver", "body.nfe", "body.options.x"} <= set(errs)


def test_bad_query_and_path_parameters_are_named(client):
    errs = _errors(client.get("/jobs?limit=0&state=done", headers=ADMIN))
    assert "query.limit" in errs and "query.state" in errs and "'running'" in errs["query.state"]
    errs = _errors(client.get("/schedules/ddpm-digits/unipc/zero", headers=ADMIN))
    assert "path.nfe" in errs


def test_readable_moves_a_catalog_field_name_into_loc():
    err = {"loc": ("body",), "type": "value_error",
           "msg": "Value error, model spec field 'sha256': required for format 'diffusers'"}
    out = readable(err)
    assert out["loc"] == ["body", "sha256"] and out["msg"] == "sha256: required for format 'diffusers'"
