"""Enrolment: a one-time token enrols one box, over the hub's real HTTP API."""

from __future__ import annotations

import base64
import secrets

import pytest
from hub_helpers import Box

from appliance.audit.records import now_iso
from appliance.errors import NotFound
from appliance.hub import store as db
from appliance.hub.enrolment import issue_token, token_hash


def test_enrolled_box_gets_its_id_group_and_the_hubs_root(hub, groups, client):
    box = Box()
    issued = issue_token(hub, "lab", actor="ops")
    answer = client.post("/v1/enroll", json=box.enrol_body(issued.token))
    assert answer.status_code == 201, answer.text
    body = answer.json()
    assert body["group"] == "lab" and body["device_id"].startswith("box-")
    assert base64.b64decode(body["root"]) == hub.repository.root_bytes()
    assert body["metadata_url"] == "repo/metadata/"
    with hub.store.read() as conn:
        stored = db.get_token(conn, token_hash(issued.token))
        device = db.get_device(conn, body["device_id"])
    assert stored is not None and stored["used_at"] and stored["device_id"] == body["device_id"]
    assert device is not None and device["hardware"]["profile"] == "x86_64-avx2"
    # only the token's hash is stored
    assert issued.token not in (hub.directory / "hub.db").read_bytes().decode("latin-1")


def test_invalid_expired_and_reused_tokens_are_401_saying_which(hub, groups, client):
    invalid = client.post("/v1/enroll", json=Box().enrol_body(secrets.token_urlsafe(32)))
    assert invalid.status_code == 401 and "invalid enrolment token" in invalid.json()["error"]

    expired = secrets.token_urlsafe(32)
    with hub.store.write() as conn:
        db.add_token(conn, token_sha256=token_hash(expired), group="lab", at=now_iso(),
                     by="ops", expires_at="2000-01-01T00:00:00.000000+00:00")
    answer = client.post("/v1/enroll", json=Box().enrol_body(expired))
    assert answer.status_code == 401 and "expired at 2000-01-01" in answer.json()["error"]

    once = issue_token(hub, "lab", actor="ops").token
    assert client.post("/v1/enroll", json=Box().enrol_body(once)).status_code == 201
    again = client.post("/v1/enroll", json=Box().enrol_body(once))
    assert again.status_code == 401 and "already used" in again.json()["error"]

    with hub.store.read() as conn:
        assert len(db.list_devices(conn)) == 1  # the refusals stored nothing


def test_enrolment_with_bad_keys_or_body_is_400(hub, groups, client):
    box = Box()
    body = box.enrol_body(issue_token(hub, "lab", actor="ops").token)
    bad_key = client.post("/v1/enroll", json={**body, "signing_key": "bm90IGEga2V5"})
    assert bad_key.status_code == 400 and "signing_key" in bad_key.json()["error"]
    unknown = client.post("/v1/enroll", json={**body, "extra": 1})
    assert unknown.status_code == 400
    not_json = client.post("/v1/enroll", content=b"{", headers={"Content-Type": "application/json"})
    assert not_json.status_code == 400


def test_token_for_an_unknown_group_is_refused(hub):
    with pytest.raises(NotFound, match="groups add nowhere"):
        issue_token(hub, "nowhere", actor="ops")
