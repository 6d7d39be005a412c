"""/v1/alerts and /v1/silences on a real server with auth on: list, ack, silence, expire;
the actor is the token's subject; bad input is a 4xx saying what to fix."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from alerting import Clock, alert_settings
from helpers import make_services, serve

from appliance.access.scopes import READ, WRITE
from appliance.alerts.engine import AlertEngine
from appliance.cli.tokens import mint_token
from appliance.plugins import get_plugin_manager


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[tuple[str, dict, dict, AlertEngine]]:
    data_dir = tmp_path_factory.mktemp("alerts-api") / "var"
    services = make_services(data_dir, get_plugin_manager(autoload=False),
                             auth={"mode": "on"}, demo_models=False)
    assert services.alerts is not None
    services.alerts.close()
    engine = services.alerts = AlertEngine(data_dir, alert_settings(), clock=Clock(),
                                           audit=services.audit.log if services.audit
                                           else None)
    server = serve(services)

    def token(subject: str, *scopes: str) -> dict:
        raw, _ = mint_token(data_dir, issuer="appliance-local", audience="appliance",
                            subject=subject, ttl_s=3600, roles=[], scopes=list(scopes))
        return {"Authorization": f"Bearer {raw}"}

    yield server.url, token("alice", READ, WRITE), token("rita", READ), engine
    server.stop()


def test_alerts_are_listed_with_filters(api):
    url, writer, reader, engine = api
    engine.fire("ModelDown", "critical", {"model": "listed"}, source="health")
    engine.fire("DriftWarning", "warning", {"model": "listed"}, source="drift")
    answer = httpx.get(f"{url}/v1/alerts", params={"model": "listed",
                                                   "severity": "critical"}, headers=reader)
    assert answer.status_code == 200
    [shown] = answer.json()
    assert shown["name"] == "ModelDown" and shown["state"] == "firing"
    drift = httpx.get(f"{url}/v1/alerts", params={"matcher": 'alertname=~"Drift.*"',
                                                  "model": "listed"}, headers=reader).json()
    assert [a["name"] for a in drift] == ["DriftWarning"]
    assert drift[0]["inhibited_by"] == [shown["id"]]


def test_ack_records_the_token_subject(api):
    url, writer, reader, engine = api
    alert = engine.fire("ProbeFailed", "warning", {"model": "acked"})
    answer = httpx.post(f"{url}/v1/alerts/{alert.id}/ack", json={"comment": "on it"},
                        headers=writer)
    assert answer.status_code == 200, answer.text
    assert answer.json()["acked_by"] == "alice"
    assert answer.json()["ack_comment"] == "on it"
    refused = httpx.post(f"{url}/v1/alerts/{alert.id}/ack", json={}, headers=reader)
    assert refused.status_code == 403 and "models:write" in refused.json()["error"]
    other = httpx.post(f"{url}/v1/alerts/{alert.id}/ack", json={"actor": "mallory"},
                       headers=writer)
    assert other.status_code == 403


def test_ack_of_an_unknown_alert_is_404(api):
    url, writer, _, _ = api
    answer = httpx.post(f"{url}/v1/alerts/0123456789abcdef/ack", json={}, headers=writer)
    assert answer.status_code == 404
    assert "appliance alerts list" in answer.json()["error"]


def test_silence_is_created_listed_and_expired(api):
    url, writer, reader, engine = api
    made = httpx.post(f"{url}/v1/silences", headers=writer, json={
        "matchers": [{"name": "model", "op": "=", "value": "quiet"}],
        "duration_s": 3600, "comment": "maintenance"})
    assert made.status_code == 201, made.text
    silence = made.json()
    assert silence["created_by"] == "alice" and silence["state"] == "active"
    alert = engine.fire("ModelDown", "critical", {"model": "quiet"})
    assert engine.get_alert(alert.id)["silenced_by"] == [silence["id"]]
    active = httpx.get(f"{url}/v1/silences", params={"state": "active"}, headers=reader)
    assert silence["id"] in [s["id"] for s in active.json()]
    gone = httpx.delete(f"{url}/v1/silences/{silence['id']}", headers=writer)
    assert gone.status_code == 200 and gone.json()["state"] == "expired"
    assert gone.json()["expired_by"] == "alice"
    again = httpx.delete(f"{url}/v1/silences/{silence['id']}", headers=writer)
    assert again.status_code == 409
    unknown = httpx.delete(f"{url}/v1/silences/nope", headers=writer)
    assert unknown.status_code == 404


@pytest.mark.parametrize(("body", "says"), [
    ({"matchers": [{"name": "model", "op": "~=", "value": "x"}], "duration_s": 60,
      "comment": "c"}, "op"),
    ({"matchers": [{"name": "model", "op": "=~", "value": "(["}], "duration_s": 60,
      "comment": "c"}, "regular expression is invalid"),
    ({"matchers": [{"name": "model", "op": "=", "value": "x"}], "comment": "c",
      "starts_at": "2030-04-01T00:00:00Z", "ends_at": "2030-03-31T00:00:00Z"},
     "ends before it starts"),
    ({"matchers": [{"name": "model", "op": "=", "value": "x"}], "comment": "c",
      "ends_at": "next tuesday"}, "ISO 8601"),
    ({"matchers": [{"name": "model", "op": "=~", "value": ".*"}], "duration_s": 60,
      "comment": "c"}, "does not match an empty label"),
    ({"matchers": [{"name": "model", "op": "=", "value": "x"}], "duration_s": 60,
      "comment": " "}, "comment"),
])
def test_bad_silence_is_a_400_saying_what_to_fix(api, body, says):
    url, writer, _, _ = api
    answer = httpx.post(f"{url}/v1/silences", json=body, headers=writer)
    assert answer.status_code == 400, answer.text
    assert says in answer.json()["error"]


def test_unknown_list_filter_value_is_a_400(api):
    url, _, reader, _ = api
    answer = httpx.get(f"{url}/v1/alerts", params={"state": "burning"}, headers=reader)
    assert answer.status_code == 400
    assert "error" in answer.json()
