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
        have = {key for key, op in ops.items() if status in op["responses"]}
        if status == "503":  # also every route that reads the database (api.outage answers it)
            keyed = {key for key, op in ops.items() if "401" in op["responses"]}
            assert where | keyed <= have and ("get", "/healthz") not in have, sorted(have)
        else:
            assert have == where, status
    assert schema_of(ops[("get", "/schedules/{model}/{solver}/{nfe}")], "404") == "ScheduleNotFound"
    assert schema_of(ops[("get", "/readyz")], "200") == "Ready" and schema_of(ops[("get", "/readyz")], "503") == "NotReady"


def test_the_error_bodies_are_what_the_server_sends(client):
    spec = client.get("/openapi.json").json()["components"]["schemas"]
    assert set(spec["FieldError"]["required"]) == {"loc", "msg", "type"}
    r = client.get("/jobs")
    assert r.status_code == 401 and isinstance(r.json()["detail"], str)
    r = client.get("/jobs?limit=0", headers=ADMIN)
    assert r.status_code == 422 and set(r.json()["detail"][0]) == {"loc", "msg", "type"}


def test_the_schema_states_the_limits_the_server_enforces(client):
    from registry.solvers import HEURISTIC_NAMES, SOLVER_NAMES

    spec = client.get("/openapi.json").json()
    schemas, ops = spec["components"]["schemas"], operations(spec)
    (solver_param,) = [p for p in ops[("get", "/schedules/{model}/{solver}/{nfe}")]["parameters"] if p["name"] == "solver"]
    assert solver_param["schema"]["enum"] == list(SOLVER_NAMES) == schemas["JobCreate"]["properties"]["solver"]["enum"]
    options = schemas["JobOptions"]["properties"]
    assert options["teacher_solver"]["enum"] == list(SOLVER_NAMES)
    assert options["heuristics"]["uniqueItems"] and options["heuristics"]["items"]["enum"] == list(HEURISTIC_NAMES)
    assert options["lr_x"]["maximum"] == 1e4 and "at most 10000" in options["lr_x"]["description"]
    scopes = schemas["ApiKeyCreate"]["properties"]["scopes"]
    assert scopes["uniqueItems"] and scopes["maxItems"] == 3
    model = schemas["ModelCreate"]["properties"]
    assert model["sha256"]["anyOf"][0]["pattern"] == "^[0-9a-f]{64}$" and model["sample_shape"]["items"]["maximum"] == 65536
    assert model["architecture"]["anyOf"][0]["enum"] == ["tiny_conv"] and model["location"]["maxLength"] == 1024

    r = client.get("/schedules/ddpm-digits/rk4/5", headers=ADMIN)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["path", "solver"] and "unknown solver 'rk4'" in r.text
    r = client.post("/keys", json={"name": "k", "scopes": ["admin", "admin"]}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "scopes"]
    r = client.post("/jobs", json={"model": "ddpm-digits", "solver": "unipc", "nfe": 5,
                                   "options": {"heuristics": ["edm", "edm"]}}, headers=ADMIN)
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "options", "heuristics"]
