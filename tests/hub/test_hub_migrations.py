"""A hub database made by an older appliance is migrated in place when the hub opens."""

from __future__ import annotations

import sqlite3

from hub_helpers import Box

from appliance.hub.enrolment import enroll, issue_token
from appliance.hub.fleet import add_group, list_devices
from appliance.hub.schema import SCHEMA_VERSION
from appliance.hub.services import open_hub


def test_schema_1_database_gains_the_audit_witness_column_and_keeps_its_devices(
        hub_settings):
    hub = open_hub(hub_settings)
    add_group(hub, "lab", actor="ops")
    box = Box()
    body = box.enrol_body(issue_token(hub, "lab", actor="ops").token)
    enroll(hub, body["token"], body["signing_key"], body["encryption_key"], body["hardware"])
    hub.close()
    conn = sqlite3.connect(hub_settings.data_dir / "hub.db")
    conn.execute("ALTER TABLE devices DROP COLUMN audit_witness")
    conn.execute("UPDATE hub_schema SET version = 1")
    conn.commit()
    conn.close()

    reopened = open_hub(hub_settings)
    try:
        devices = list_devices(reopened)
    finally:
        reopened.close()
    conn = sqlite3.connect(hub_settings.data_dir / "hub.db")
    version = conn.execute("SELECT version FROM hub_schema").fetchone()[0]
    conn.close()
    assert version == SCHEMA_VERSION == 3
    assert len(devices) == 1 and devices[0]["audit"]["status"] == "none"
