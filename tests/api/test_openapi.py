"""api.openapi: the schema documents every answer a route gives, read off the route itself."""

from __future__ import annotations

from api_support import ADMIN

PUBLIC = {("get", "/healthz"), ("get", "/readyz"), ("get", "/metrics"), ("get", "/dashboard/api/config")}
OWN = {  # the errors routes document themselves
    "404": {("get", "/jobs/{job_id}"), ("post", "/jobs/{job_id}/cancel"), ("post", "/jobs/{job_id}/retry"),
            ("get", "/models/{key}"), ("delete", "/keys/{key_id}"), ("get", "/schedules/{model}/{solver}/{nfe}"),
            ("get", "/schedules/{model}/{solver}/{nfe}/versions"),
            ("post", "/schedules/{model}/{solver}/{nfe}/versions/{version}/promote"),
            ("get", "/schedules/{model}/{solver}/{nfe}/versions/{version}/samples.png"),
            ("get", "/dashboard/api/versions/{version_id}")},
    "409": {("post", "/jobs"), ("post", "/jobs/{job_id}/cancel"), ("post", "/jobs/{job_id}/retry"), ("post", "/models")},
    "503": {("post", "/jobs"), ("post", "/jobs/{job_id}/retry"), ("get", "/readyz")},
}


def operations(spec: dict) -> dict[tuple[str, str], dict]:
    return {(method, path): op for path, ops in spec["paths"].items() for method, op in ops.items()}


def schema_of(op: dict, status: str) -> str:
    return op["responses"][status]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]


def test_every_route_documents_401_403_413_and_422_as_it_is_built(client):
    spec = client.get("/openapi.json").json()
    for (method, path), op in operations(spec).items():
        codes, where = set(op["responses"]), (method, path)
        assert schema_of(op, "413") == "ErrorBody", where
        if where in PUBLIC:
            assert op["security"] == [] and not {"401", "403"} & codes, where
        elif path == "/auth/me":
            assert "security" not in op and "401" in codes and "403" not in codes
        else:
            assert "security" not in op and schema_of(op, "401") == schema_of(op, "403") == "ErrorBody", where
        takes_input = bool(op.get("parameters")) or "requestBody" in op
        assert ("422" in codes) == takes_input, where
        if takes_input:
            assert schema_of(op, "422") == "ValidationErrorBody", where
    assert "HTTPValidationError" not in spec["components"]["schemas"]


def test_routes_document_their_own_404_409_503(client):
    ops = operations(client.get("/openapi.json").json())
    for status, where in OWN.items():
        assert {key for key, op in ops.items() if status in op["responses"]} == where, status
    assert schema_of(ops[("get", "/schedules/{model}/{solver}/{nfe}")], "404") == "ScheduleNotFound"
    assert schema_of(ops[("get", "/readyz")], "503") == "Readiness"


def test_the_error_bodies_are_what_the_server_sends(client):
    spec = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(spec["FieldError"]["required"]) == {"loc", "msg", "type"}
    r = client.get("/jobs")
    assert r.status_code == 401 and isinstance(r.json()["detail"], str)
    r = client.get("/jobs?limit=0", headers=ADMIN)
    assert r.status_code == 422 and set(r.json()["detail"][0]) == {"loc", "msg", "type"}
