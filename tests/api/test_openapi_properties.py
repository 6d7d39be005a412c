"""Property tests: schemathesis plays generated requests for every operation of the
server's own OpenAPI document against a real server on 127.0.0.1, with auth off (the
loopback default) and on (a local token holding every scope), and checks that no answer
is a 5xx and that every answer's status, content type, headers and body are the ones the
document declares; schema-invalid requests (schemathesis' negative mode) too.

Nothing is excluded: generated model names are random strings, so the state-changing
operations (promote, rollback, delete, unload, hold ...) answer 404/400 rather than
change the demo models; the operations that only read (GETs, inference) are played a
second time with the path naming the real breast_cancer model. Examples per operation
are bounded so the whole file runs in well under a minute on a small box.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from helpers import make_services, serve
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from appliance.access.scopes import (
    ADMIN,
    APPROVE,
    AUDIT_READ,
    EXPORT,
    INFER,
    PROMOTE,
    READ,
    WRITE,
)
from appliance.cli.tokens import mint_token
from appliance.services import seed_demo_models

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_headers_conformance, response_schema_conformance]


def _server(tmp_path_factory, name: str, **overrides) -> Iterator[tuple[str, dict]]:
    import appliance_onnxruntime

    from appliance.plugins import get_plugin_manager
    data_dir = tmp_path_factory.mktemp(name) / "var"
    pm = get_plugin_manager(autoload=False, extra=(appliance_onnxruntime,))
    services = make_services(data_dir, pm, **overrides)
    seed_demo_models(services)
    server = serve(services)
    token, _ = mint_token(data_dir, issuer="appliance-local", audience="appliance",
                          subject="schemathesis", ttl_s=3600, roles=[],
                          scopes=[READ, INFER, WRITE, PROMOTE, APPROVE, EXPORT, AUDIT_READ,
                                  ADMIN])
    yield server.url, {"Authorization": f"Bearer {token}"}
    server.stop()


@pytest.fixture(scope="module")
def open_server(tmp_path_factory) -> Iterator[tuple[str, dict]]:
    yield from _server(tmp_path_factory, "open")


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory) -> Iterator[tuple[str, dict]]:
    yield from _server(tmp_path_factory, "auth", auth={"mode": "on"})


#: path parameters of a real demo model, for the operations that change nothing
REAL = {"name": "breast_cancer", "version": "1"}


def _reads_only(case) -> bool:
    path = case.operation.path
    return case.method.upper() == "GET" and not path.endswith("/export") or (
        path.endswith(("/infer", "/index")))


def play(base: str, headers: dict, examples: int,
         mode: GenerationMode = GenerationMode.POSITIVE) -> tuple[int, list[str]]:
    """Every operation of the server's document, ``examples`` generated cases each
    (schema-valid ones, or with ``NEGATIVE`` schema-invalid ones): (cases played,
    failures as "METHOD path: what")."""
    schema = schemathesis.openapi.from_url(base + "/schema/openapi.json")
    played, failures = 0, []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(max_examples=examples, deadline=None, derandomize=True, database=None,
                  phases=[Phase.explicit, Phase.generate],
                  suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(generation_mode=mode))
        def run(case) -> None:
            nonlocal played
            played += 1
            case.call_and_validate(base_url=base, headers=headers, checks=CHECKS, timeout=30)
            if case.path_parameters and _reads_only(case):  # again, on a real model
                played += 1
                case.path_parameters = {k: REAL.get(k, v)
                                        for k, v in case.path_parameters.items()}
                case.call_and_validate(base_url=base, headers=headers, checks=CHECKS,
                                       timeout=30)

        try:
            run()
        except Unsatisfiable:  # nothing to make invalid (no parameters, no body)
            continue
        except Exception as exc:  # one line per failing operation, all reported together
            failures.append(f"{operation.method.upper()} {operation.path}: "
                            f"{str(exc).strip().splitlines()[0][:400]}")
    return played, failures


def test_every_operation_answers_as_documented_with_auth_off(open_server):
    url, _ = open_server
    played, failures = play(url, {}, examples=20)
    assert not failures, "\n".join(failures)
    assert played >= 100


def test_every_operation_answers_as_documented_with_auth_on(auth_server):
    url, headers = auth_server
    played, failures = play(url, headers, examples=20)
    assert not failures, "\n".join(failures)
    assert played >= 100


def test_schema_invalid_requests_get_documented_4xx_answers(auth_server):
    url, headers = auth_server
    played, failures = play(url, headers, examples=6, mode=GenerationMode.NEGATIVE)
    assert not failures, "\n".join(failures)
    assert played >= 50


def test_every_operation_without_a_token_answers_as_documented(auth_server):
    url, _ = auth_server
    played, failures = play(url, {}, examples=2)
    assert not failures, "\n".join(failures)


def test_document_declares_errors_security_and_inference_schemas(open_server):
    doc = httpx.get(open_server[0] + "/schema/openapi.json").json()
    assert doc["components"]["schemas"]["Error"]["required"] == ["error"]
    assert {"bearer", "mtls"} <= set(doc["components"]["securitySchemes"])
    infer = doc["paths"]["/v2/models/{name}/infer"]["post"]
    assert infer["operationId"] == "ModelInfer"
    assert infer["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/InferenceRequest"}
    assert doc["paths"]["/v2/health/live"]["get"]["security"] == []
    for path, item in doc["paths"].items():
        for method, op in item.items():
            for status in ("400", "404", "503"):
                content = op["responses"][status]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (
                    method, path, status)
    export = doc["paths"]["/v1/models/{name}/versions/{version}/export"]["get"]
    assert any(p["name"] == "recipient" and p["required"] for p in export["parameters"])
    consumer = doc["components"]["schemas"]["ConsumerBody"]["properties"]["name"]
    assert consumer["minLength"] == 1
