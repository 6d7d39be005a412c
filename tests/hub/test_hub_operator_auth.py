"""Operators and CI publishers are Bearer-token principals with hub scopes; boxes are not
(they sign with their device keys). Every operator command is in the audit chain under
the token's subject."""

from __future__ import annotations

from hub_helpers import bearer, token

from appliance.hub import store as db
from appliance.hub.api import OPEN_ROUTES, HubScope
from appliance.hub.app import create_hub_app
from appliance.hub.services import open_hub

ROUTES = [("GET", "/v1/devices", None), ("GET", "/v1/groups", None),
          ("POST", "/v1/groups", {"name": "g"}),
          ("POST", "/v1/enroll-tokens", {"group": "lab"}),
          ("POST", "/v1/assignments", {"group": "lab", "model": "m", "version": "1",
                                       "stage": "production"}),
          ("GET", "/v1/packages", None), ("POST", "/v1/publish", None),
          ("GET", "/v1/audit/verify", None),
          ("GET", "/v1/hub/rollouts", None), ("POST", "/v1/hub/rollouts", {}),
          ("GET", "/v1/hub/rollouts/r-1", None), ("POST", "/v1/hub/rollouts/r-1/stop", None)]


def test_operator_routes_refuse_a_missing_or_foreign_token_with_401(hub_settings, client):
    # a box's (or another hub's) local token: the appliance's default issuer and audience
    foreign = bearer(token(hub_settings, "alice", "hub:operate", issuer="appliance-local",
                           audience="appliance"))
    for method, path, body in ROUTES:
        answer = client.request(method, path, json=body)
        assert answer.status_code == 401, (method, path, answer.text)
        assert answer.headers["www-authenticate"].startswith("Bearer")
        assert client.request(method, path, json=body, headers=foreign).status_code == 401


def test_operator_command_without_the_right_scope_is_403(hub_settings, groups, client):
    reader = bearer(token(hub_settings, "auditor", "hub:read"))
    publisher = bearer(token(hub_settings, "ci", "hub:publish"))
    operator = bearer(token(hub_settings, "alice", "hub:operate"))
    refused = [(reader, "POST", "/v1/groups", {"name": "g"}),
               (publisher, "POST", "/v1/assignments", {"group": "lab", "model": "m",
                                                        "version": "1", "stage": "canary"}),
               (publisher, "POST", "/v1/enroll-tokens", {"group": "lab"}),
               (operator, "POST", "/v1/publish", None),
               (operator, "GET", "/v1/devices", None)]
    for headers, method, path, body in refused:
        answer = client.request(method, path, json=body, headers=headers)
        assert answer.status_code == 403, (path, answer.text)
        assert "lacks the hub:" in answer.json()["error"]
    assert client.get("/v1/devices", headers=reader).status_code == 200


def test_operator_commands_are_audited_with_the_token_subject(hub, hub_settings, client):
    operator = bearer(token(hub_settings, "alice", "hub:operate"))
    assert client.post("/v1/groups", headers=operator,
                       json={"name": "lab", "description": "the lab"}).status_code == 201
    issued = client.post("/v1/enroll-tokens", headers=operator, json={"group": "lab",
                                                                      "ttl_s": 600})
    assert issued.status_code == 201 and issued.json()["group"] == "lab"
    duplicate = client.post("/v1/groups", headers=operator, json={"name": "lab"})
    assert duplicate.status_code == 409
    with hub.store.read() as conn:
        rows = db.audit_rows(conn)
    assert [(r["actor"], r["action"]) for r in rows] == [
        ("alice", "group.add"), ("alice", "enrolment-token.issue")]
    assert issued.json()["token"] not in rows[1]["detail"]


def test_bad_operator_input_is_400_with_a_message(hub_settings, groups, client):
    operator = bearer(token(hub_settings, "alice", "hub:operate"))
    for body in ({"name": ""}, {"name": "bad name!"}, {"name": "g", "extra": 1}, None):
        answer = client.post("/v1/groups", headers=operator, json=body)
        assert answer.status_code == 400, (body, answer.text)
        assert answer.json()["error"]
    answer = client.post("/v1/enroll-tokens", headers=operator,
                         json={"group": "lab", "ttl_s": 10**9})
    assert answer.status_code == 400 and "max_enrolment_ttl_s" in answer.json()["error"]


def test_every_api_route_but_the_box_routes_needs_a_hub_scope(hub_settings):
    opened = open_hub(hub_settings)
    try:
        app = create_hub_app(opened)
        seen = set()
        for route in app.routes:
            if not route.path.startswith("/v1/"):
                continue  # /repo (static files, public by design) and /schema
            for handler in getattr(route, "route_handlers", []):
                for method in set(handler.http_methods) - {"OPTIONS", "HEAD"}:
                    guarded = any(isinstance(g, HubScope) for g in handler.guards or [])
                    assert guarded != ((method, route.path) in OPEN_ROUTES), route.path
                    seen.add((method, route.path))
        assert seen >= OPEN_ROUTES and len(seen) == len(ROUTES) + len(OPEN_ROUTES)
    finally:
        opened.close()
