"""The OpenAPI document at ``/schema/openapi.json``, finished after litestar builds it.

litestar documents what it can see in the handlers' signatures; the rest is said here, on
the generated document (a JSON dict), once at start-up:

- every error is ``{"error": "..."}`` (:data:`ERROR`), and every status a route can send
  (400, 401, 403, 404, 409, 413, 503 ...) is documented, litestar's ``{status_code,
  detail, extra}`` 400 schema replaced;
- bearer tokens (JWT) and client certificates are declared as security schemes, with each
  route's requirement from :data:`~appliance.api.auth.ROUTE_SCOPES` (health and the
  document itself are open);
- required strings in request bodies must hold a non-blank character (the handlers
  refuse blank ones), and the export route's ``recipient`` query parameter is declared;
- the inference routes (answered outside litestar) get the Open Inference Protocol
  schemas: :data:`OIP_SCHEMAS`.
"""

from __future__ import annotations

from typing import Any

from .auth import OPEN, ROUTE_SCOPES

ERROR_REF = {"$ref": "#/components/schemas/Error"}
ERROR: dict[str, Any] = {
    "type": "object", "required": ["error"], "title": "Error",
    "properties": {"error": {"type": "string",
                             "description": "what went wrong and what to do about it"}},
}
_JSON_ERROR = {"application/json": {"schema": ERROR_REF}}

_TENSOR_DATA: dict[str, Any] = {
    "description": "tensor elements, flat (row-major) or nested to match shape",
    "type": "array",
    "items": {"oneOf": [{"type": "number"}, {"type": "string"}, {"type": "boolean"},
                        {"type": "array"}]},
}
_PARAMETERS: dict[str, Any] = {"type": "object", "additionalProperties": True}
_SHAPE: dict[str, Any] = {"type": "array", "items": {"type": "integer", "minimum": -1}}
_DATATYPE: dict[str, Any] = {
    "type": "string",
    "enum": ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32",
             "INT64", "FP16", "FP32", "FP64", "BF16", "BYTES"]}

#: Open Inference Protocol v2 request and response bodies (JSON form)
OIP_SCHEMAS: dict[str, dict[str, Any]] = {
    "RequestInput": {
        "type": "object", "title": "RequestInput", "required": ["name", "shape", "datatype"],
        "properties": {"name": {"type": "string"}, "shape": _SHAPE, "datatype": _DATATYPE,
                       "parameters": _PARAMETERS, "data": _TENSOR_DATA}},
    "RequestOutput": {
        "type": "object", "title": "RequestOutput", "required": ["name"],
        "properties": {"name": {"type": "string"}, "parameters": _PARAMETERS}},
    "InferenceRequest": {
        "type": "object", "title": "InferenceRequest", "required": ["inputs"],
        "properties": {
            "id": {"type": "string"}, "parameters": _PARAMETERS,
            "inputs": {"type": "array",
                       "items": {"$ref": "#/components/schemas/RequestInput"}},
            "outputs": {"type": "array",
                        "items": {"$ref": "#/components/schemas/RequestOutput"}}}},
    "ResponseOutput": {
        "type": "object", "title": "ResponseOutput", "required": ["name", "shape", "datatype"],
        "properties": {"name": {"type": "string"}, "shape": _SHAPE, "datatype": _DATATYPE,
                       "parameters": _PARAMETERS, "data": _TENSOR_DATA}},
    "InferenceResponse": {
        "type": "object", "title": "InferenceResponse", "required": ["model_name", "outputs"],
        "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"},
            "id": {"type": "string"}, "parameters": _PARAMETERS,
            "outputs": {"type": "array",
                        "items": {"$ref": "#/components/schemas/ResponseOutput"}}}},
}

_TENSOR_METADATA: dict[str, Any] = {
    "type": "object", "required": ["name", "datatype", "shape"],
    "properties": {"name": {"type": "string"}, "datatype": _DATATYPE, "shape": _SHAPE}}
OIP_SCHEMAS.update({
    "MetadataServerResponse": {
        "type": "object", "title": "MetadataServerResponse",
        "required": ["name", "version", "extensions"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "extensions": {"type": "array", "items": {"type": "string"}}}},
    "MetadataModelResponse": {
        "type": "object", "title": "MetadataModelResponse",
        "required": ["name", "platform", "inputs", "outputs"],
        "properties": {"name": {"type": "string"},
                       "versions": {"type": "array", "items": {"type": "string"}},
                       "platform": {"type": "string"},
                       "inputs": {"type": "array", "items": _TENSOR_METADATA},
                       "outputs": {"type": "array", "items": _TENSOR_METADATA},
                       "parameters": _PARAMETERS}},
    "ModelReadyResponse": {
        "type": "object", "title": "ModelReadyResponse", "required": ["name", "ready"],
        "properties": {"name": {"type": "string"}, "version": {"type": "string"},
                       "ready": {"type": "boolean"}}},
})
#: the 200 bodies of the v2 routes litestar types as bare objects
_V2_OK = {
    "/v2": "MetadataServerResponse",
    "/v2/models/{name}": "MetadataModelResponse",
    "/v2/models/{name}/versions/{version}": "MetadataModelResponse",
    "/v2/models/{name}/ready": "ModelReadyResponse",
    "/v2/models/{name}/versions/{version}/ready": "ModelReadyResponse",
}
_HEALTH_OK = {"/v2/health/live": "live", "/v2/health/ready": "ready"}

SECURITY_SCHEMES: dict[str, Any] = {
    "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
               "description": "A JWT from a configured issuer or `appliance tokens mint`; "
                              "its scopes decide the routes (docs/security.md)."},
    "mtls": {"type": "mutualTLS",
             "description": "A client certificate signed by auth.tls_client_ca, mapped to "
                            "scopes by auth.mtls_subjects."},
}

#: status -> description, documented on every route litestar answers
_COMMON = {
    "400": "Bad request: the message names what to fix",
    "401": "No valid credentials (a Bearer token or client certificate is needed)",
    "403": "The credentials lack the scope this route needs",
    "404": "Unknown model, version or other resource",
    "409": "Conflicts with the current state (a hold, a stage, a concurrent change)",
    "503": "Not ready, overloaded or at the connection limit (see Retry-After)",
}
_BODY_ONLY = {"413": "Request body over max_body_bytes"}
_METHODS = ("get", "put", "post", "delete", "patch")


def _error_responses(operation: dict[str, Any], method: str, *, open_route: bool) -> None:
    responses = operation.setdefault("responses", {})
    wanted = {k: v for k, v in _COMMON.items()
              if not (open_route and k in ("401", "403"))}
    if method in ("post", "put", "patch"):
        wanted.update(_BODY_ONLY)
    for status, description in wanted.items():  # replaces litestar's 400 schema too
        responses[status] = {"description": description, "content": _JSON_ERROR}
        if status == "503":
            responses[status]["headers"] = {"Retry-After": {
                "schema": {"type": "integer"}, "description": "seconds to wait"}}


def _non_blank_strings(schema: dict[str, Any]) -> None:
    """Required string properties of a request body must hold a non-blank character."""
    properties = schema.get("properties") or {}
    for name in schema.get("required") or []:
        prop = properties.get(name)
        if isinstance(prop, dict) and prop.get("type") == "string":
            prop.setdefault("minLength", 1)
            prop.setdefault("pattern", r"\S")


def _security(method: str, path: str, *, auth_required: bool) -> list[dict[str, list[str]]]:
    for m, p, need in ROUTE_SCOPES:
        if m == method.upper() and p == path:
            if need == OPEN:
                return []
            break
    schemes: list[dict[str, list[str]]] = [{"bearer": []}, {"mtls": []}]
    if path.endswith("/export"):
        return [{"bearer": []}]  # models:export is always required, even when open
    return schemes if auth_required else [*schemes, {}]


def complete_document(schema: dict[str, Any], *, auth_required: bool) -> None:
    """Finish litestar's generated document in place (see the module docstring)."""
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    schemas["Error"] = ERROR
    schemas.update(OIP_SCHEMAS)
    components["securitySchemes"] = SECURITY_SCHEMES
    schema["security"] = [{"bearer": []}, {"mtls": []}]
    for name, component in schemas.items():
        if name.endswith("Body"):  # the msgspec request bodies of the admin routes
            _non_blank_strings(component)
    for path, item in (schema.get("paths") or {}).items():
        for method in _METHODS:
            operation = item.get(method)
            if not isinstance(operation, dict):
                continue
            security = _security(method, path, auth_required=auth_required)
            operation["security"] = security
            _error_responses(operation, method, open_route=not security)
            if path.endswith("/export"):
                _document_export(operation)
            _document_ok(operation, path)
            if path == "/v2/repository/index":
                operation["requestBody"] = {"required": False, "content": {
                    "application/json": {"schema": {
                        "type": "object",
                        "properties": {"ready": {"type": "boolean"}}}}}}


def _document_ok(operation: dict[str, Any], path: str) -> None:
    if path in _V2_OK:
        body: dict[str, Any] = {"$ref": f"#/components/schemas/{_V2_OK[path]}"}
    elif path in _HEALTH_OK:
        key = _HEALTH_OK[path]
        body = {"type": "object", "required": [key], "properties": {key: {"type": "boolean"}}}
    else:
        return
    ok = operation.setdefault("responses", {}).setdefault("200", {"description": "OK"})
    ok["content"] = {"application/json": {"schema": body}}


def _document_export(operation: dict[str, Any]) -> None:
    params = operation.setdefault("parameters", [])
    if not any(p.get("name") == "recipient" for p in params):
        params.append({"name": "recipient", "in": "query", "required": True,
                       "description": "a recipient registered with `appliance keys "
                                      "add-recipient`",
                       "schema": {"type": "string", "minLength": 1, "pattern": r"\S"}})
    operation.setdefault("responses", {}).setdefault("200", {})["content"] = {
        "application/x-tar": {"schema": {"type": "string", "format": "binary"}}}
