"""Publishing signed packages as encrypted TUF targets, and assigning them to groups."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hub_helpers import bearer, built_package, decrypt_target, desired_of, target_bytes, token

from appliance.errors import BadRequest, Conflict, NotFound
from appliance.hub import store as db
from appliance.hub.audit_chain import verify_chain
from appliance.hub.publish import publish
from appliance.hub.rollout import assign
from appliance.security.signing import SignatureInvalid


def test_unsigned_or_untrusted_packages_are_refused(tmp_path, hub, publisher_key):
    unsigned = built_package(tmp_path, None)
    with pytest.raises(SignatureInvalid, match="unsigned") as refused:
        publish(hub, unsigned, actor="ci")
    assert refused.value.status == 400
    stranger = built_package(tmp_path, Ed25519PrivateKey.generate(), version="2")
    with pytest.raises(SignatureInvalid, match="does not trust"):
        publish(hub, stranger, actor="ci")
    with hub.store.read() as conn:
        assert db.list_packages(conn) == []
    assert not any((hub.directory / "repo" / "targets").rglob("*.tar.enc"))


def test_untrusted_package_is_refused_over_http_too(tmp_path, hub_settings, hub,
                                                    publisher_key, client):
    ci = bearer(token(hub_settings, "ci-pipeline", "hub:publish"))
    stranger = built_package(tmp_path, Ed25519PrivateKey.generate())
    answer = client.post("/v1/publish", content=stranger.read_bytes(), headers=ci)
    assert answer.status_code == 400 and "does not trust" in answer.json()["error"]
    signed = built_package(tmp_path, publisher_key, version="2")
    answer = client.post("/v1/publish", content=signed.read_bytes(), headers=ci)
    assert answer.status_code == 201, answer.text
    assert answer.json()["published_by"] == "ci-pipeline"
    again = client.post("/v1/publish", content=signed.read_bytes(), headers=ci)
    assert again.status_code == 200 and again.json()["published"] is False


def test_publish_then_assign_sets_desired_state_for_that_groups_devices_only(
        tmp_path, hub, groups, publisher_key, enrol, client, operator):
    lab_box, field_box = enrol("lab"), enrol("field")
    package = built_package(tmp_path, publisher_key, version="1")
    record = publish(hub, package, actor="ci")
    assert record["published"] and record["target_path"] == "packages/scale/1/scale-1.tar.enc"
    ciphertext = target_bytes(hub.directory, record["target_path"])
    assert package.read_bytes()[:4096] not in ciphertext  # nothing usable on the CDN

    answer = client.post("/v1/assignments", headers=operator, json={
        "group": "lab", "model": "scale", "version": "1", "stage": "production"})
    assert answer.status_code == 201, answer.text
    assert answer.json()["devices"] == 1

    desired = desired_of(hub.directory, lab_box.device_id)
    assert set(desired) == {"scale"}
    entry = desired["scale"]
    assert (entry["version"], entry["stage"], entry["target"]) == ("1", "production",
                                                                   record["target_path"])
    assert entry["sha256"] == record["target_sha256"]
    assert desired_of(hub.directory, field_box.device_id) == {}
    # the lab box, and only it, can open the package with its own key
    assert decrypt_target(ciphertext, entry["key"], lab_box.encryption) == package.read_bytes()
    with pytest.raises(Exception, match="does not unwrap"):
        decrypt_target(ciphertext, entry["key"], field_box.encryption)


def test_a_box_enrolled_after_the_assignment_gets_it_in_its_first_desired_state(
        tmp_path, hub, groups, publisher_key, enrol):
    publish(hub, built_package(tmp_path, publisher_key), actor="ci")
    assign(hub, "lab", "scale", "1", "canary", actor="ops")
    late = enrol("lab")
    assert desired_of(hub.directory, late.device_id)["scale"]["stage"] == "canary"


def test_assign_of_a_version_the_hub_does_not_hold_is_refused(tmp_path, hub, groups,
                                                              publisher_key, client,
                                                              operator):
    publish(hub, built_package(tmp_path, publisher_key), actor="ci")
    with pytest.raises(NotFound, match=r"holds no package of scale version 9 \(held: 1\)"):
        assign(hub, "lab", "scale", "9", "production", actor="ops")
    answer = client.post("/v1/assignments", headers=operator, json={
        "group": "lab", "model": "other", "version": "1", "stage": "production"})
    assert answer.status_code == 404 and "publish it first" in answer.json()["error"]
    with pytest.raises(BadRequest, match="cannot be assigned"):
        assign(hub, "lab", "scale", "1", "archived", actor="ops")
    with pytest.raises(NotFound, match="no group 'nowhere'"):
        assign(hub, "nowhere", "scale", "1", "production", actor="ops")
    with hub.store.read() as conn:
        assert db.current_assignments(conn, "lab") == []
    actions = [r["action"] for r in _audit(hub)]
    assert "assignment.set" not in actions


def test_a_changed_package_under_a_held_version_is_a_conflict(tmp_path, hub, publisher_key):
    publish(hub, built_package(tmp_path, publisher_key, factor=2.0), actor="ci")
    with pytest.raises(Conflict, match="needs a new version"):
        publish(hub, built_package(tmp_path, publisher_key, factor=3.0), actor="ci")
    assert verify_chain(hub.store)["ok"]


def _audit(hub):
    with hub.store.read() as conn:
        return db.audit_rows(conn)
