"""Operator commands on the TUF repository: an air-gapped bundle for one group, online
key rotation, and the scheduled re-signing, against the real HubRepository."""

from __future__ import annotations

import json
import threading

from hub_helpers import built_package

from appliance.hub import store as db
from appliance.hub.fleet import export_bundle, rotate_online_key
from appliance.hub.publish import publish
from appliance.hub.rollout import assign
from appliance.hub.scheduler import refresh, start_scheduler
from appliance.hub.tuf_layout import RepoLayout


def test_bundle_for_a_group_holds_its_desired_states_and_packages_only(
        tmp_path, hub, groups, publisher_key, enrol):
    lab_box, field_box = enrol("lab"), enrol("field")
    publish(hub, built_package(tmp_path, publisher_key, version="1"), actor="ci")
    publish(hub, built_package(tmp_path, publisher_key, version="2", factor=3.0), actor="ci")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    assign(hub, "field", "scale", "2", "production", actor="ops")
    out = tmp_path / "usb"
    result = export_bundle(hub, "lab", out, actor="ops")
    assert result["devices"] == [lab_box.device_id]
    names = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()}
    assert any(n.startswith(f"targets/devices/{lab_box.device_id}/") for n in names)
    assert not any(field_box.device_id in n for n in names)
    assert any(n.startswith("targets/packages/scale/1/") for n in names)
    assert not any(n.startswith("targets/packages/scale/2/") for n in names)
    assert RepoLayout(out).read().timestamp.signed.version >= 1
    with hub.store.read() as conn:
        last = db.audit_rows(conn)[-1]
    assert last["action"] == "bundle.export" and json.loads(last["detail"])["group"] == "lab"


def test_rotating_the_online_key_publishes_a_new_root_and_is_audited(hub, groups, enrol):
    box = enrol("lab")
    before = hub.repository.root_versions()[-1]
    result = rotate_online_key(hub, actor="ops")
    assert result["root_version"] == before + 1
    state = hub.repository.state()
    assert state.root.signed.roles["timestamp"].keyids == [result["key_id"]]
    assert hub.repository.state().find_target(f"devices/{box.device_id}/desired.json")
    with hub.store.read() as conn:
        last = db.audit_rows(conn)[-1]
    assert (last["actor"], last["action"]) == ("ops", "online-key.rotate")


def test_scheduled_refresh_re_signs_the_timestamp(hub, monkeypatch):
    before = hub.repository.state().timestamp.signed.version
    assert refresh(hub)["timestamp"] == before + 1
    signed = threading.Event()
    real = hub.repository.refresh

    def observed():
        answer = real()
        signed.set()
        return answer

    monkeypatch.setattr(hub.repository, "refresh", observed)
    monkeypatch.setattr(hub.settings, "refresh_minutes", 0.05 / 60)
    scheduler = start_scheduler(hub)
    try:
        assert signed.wait(10)
    finally:
        scheduler.shutdown(wait=True)
    assert hub.repository.state().timestamp.signed.version > before + 1
