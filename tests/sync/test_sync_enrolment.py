"""Enrolment with a real hub over HTTP on 127.0.0.1, and signed reports from the outbox
acknowledged by sequence."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from sync_helpers import closed_port

from appliance.cli import main
from appliance.errors import Conflict
from appliance.hub.fleet import list_devices
from appliance.sync.enroll import EnrollmentRefused, enroll
from appliance.sync.hub_api import HubUnreachable
from appliance.sync.identity import load_identity
from appliance.sync.outbox import Outbox
from appliance.sync.state import enrollment_of, root_path
from appliance.sync.upload import upload

HARDWARE = {"profile": "x86_64-avx2", "facts": {"cpu_count": 4}}


def test_enrolment_stores_the_device_its_group_and_the_hubs_root(hub, hub_url, box,
                                                               enrolment_token):
    one = box()
    enrollment = enroll(one.settings, hub_url, enrolment_token(), hardware=HARDWARE)
    assert enrollment_of(one.settings.data_dir) == enrollment
    assert enrollment.group == "lab" and enrollment.hub_url == hub_url
    assert enrollment.metadata_url == f"{hub_url}/repo/metadata"
    assert root_path(one.settings.data_dir).read_bytes() == hub.repository.root_bytes()
    devices = list_devices(hub)
    assert [d["id"] for d in devices] == [enrollment.device_id]
    assert devices[0]["signing_key_id"] == load_identity(one.settings.data_dir).key_id


def test_a_used_token_is_a_clear_401_and_writes_nothing(hub_url, box, enrolment_token):
    token = enrolment_token()
    enroll(box("a").settings, hub_url, token, hardware=HARDWARE)
    second = box("b")
    with pytest.raises(EnrollmentRefused, match="refused the enrolment token") as refused:
        enroll(second.settings, hub_url, token, hardware=HARDWARE)
    assert refused.value.status == 401
    assert enrollment_of(second.settings.data_dir) is None
    assert not root_path(second.settings.data_dir).exists()


def test_an_enrolled_box_enrols_again_only_with_force_and_a_new_key(hub, hub_url, box,
                                                                   enrolment_token):
    one = box()
    first = enroll(one.settings, hub_url, enrolment_token(), hardware=HARDWARE)
    with pytest.raises(Conflict, match="already enrolled"):
        enroll(one.settings, hub_url, enrolment_token(), hardware=HARDWARE)
    again = enroll(one.settings, hub_url, enrolment_token("field"), hardware=HARDWARE,
                   force=True)
    assert again.device_id != first.device_id and again.group == "field"
    assert again.key_id != first.key_id
    assert len(list_devices(hub)) == 2


def test_a_refused_forced_enrolment_keeps_the_old_one(hub_url, box, enrolment_token):
    one = box()
    first = enroll(one.settings, hub_url, enrolment_token(), hardware=HARDWARE)
    with pytest.raises(EnrollmentRefused):
        enroll(one.settings, hub_url, "not-a-token", hardware=HARDWARE, force=True)
    assert enrollment_of(one.settings.data_dir) == first
    assert load_identity(one.settings.data_dir).key_id == first.key_id


def test_an_unreachable_hub_is_named(box):
    with pytest.raises(HubUnreachable, match="unreachable"):
        enroll(box().settings, f"http://127.0.0.1:{closed_port()}", "t", hardware=HARDWARE)


def test_reports_arrive_signed_and_the_acknowledgement_trims_the_outbox(hub, hub_url, box,
                                                                      enrolment_token):
    one = box()
    enrollment = enroll(one.settings, hub_url, enrolment_token(), hardware=HARDWARE)
    identity = load_identity(one.settings.data_dir)
    with Outbox(one.settings.data_dir, identity=identity) as outbox:
        for i in range(3):
            outbox.append("report", {"health": {"status": "ok", "n": i},
                                     "installed": {}, "profile": {"profile": "test"}})
        result = upload(outbox, hub_url, enrollment.device_id, identity, timeout_s=5)
        assert (result.sent, result.acked, result.error) == (3, 3, None)
        assert outbox.status().depth == 0
    device = list_devices(hub)[0]
    assert device["reports"]["acked_through"] == 3
    assert device["health"]["n"] == 2 and device["profile"] == "test"


def test_a_gap_record_lets_the_hub_acknowledge_past_what_was_dropped(hub, hub_url, box,
                                                                    enrolment_token):
    one = box()
    enrollment = enroll(one.settings, hub_url, enrolment_token(), hardware=HARDWARE)
    identity = load_identity(one.settings.data_dir)
    with Outbox(one.settings.data_dir, max_rows=5, identity=identity) as outbox:
        for i in range(12):  # the hub is "away": the oldest are dropped
            outbox.append("report", {"health": {"status": "ok", "n": i}})
        last = outbox.status().last_seq
        result = upload(outbox, hub_url, enrollment.device_id, identity, timeout_s=5)
        assert result.error is None and result.acked == last
        assert outbox.status().depth == 0
    assert list_devices(hub)[0]["reports"]["acked_through"] == last


def test_the_cli_enrols_and_reports_status(hub_url, box, enrolment_token, monkeypatch):
    one = box()
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(one.settings.data_dir))
    runner = CliRunner()
    enrolled = runner.invoke(main, ["sync", "enroll", hub_url, enrolment_token(), "--json"])
    assert enrolled.exit_code == 0, enrolled.output
    device_id = json.loads(enrolled.output)["device_id"]
    status = runner.invoke(main, ["sync", "status", "--json"])
    assert status.exit_code == 0, status.output
    doc = json.loads(status.output)
    assert doc["enrolled"] and doc["device_id"] == device_id and doc["stale_since"] is None
    refused = runner.invoke(main, ["sync", "enroll", hub_url, "bogus", "--force", "--json"])
    assert refused.exit_code == 1
    assert "refused the enrolment token" in json.loads(refused.output)["error"]
