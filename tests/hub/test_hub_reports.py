"""Box reports: device-signed, stored exactly once per (device, seq), acknowledged by the
highest contiguous sequence number; refusals happen before any parsing."""

from __future__ import annotations

import base64
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hub_helpers import Box

from appliance.hub import store as db
from appliance.hub.reports import receive_report


def test_report_updates_the_device_and_devices_lists_it(groups, enrol, client, operator):
    box = enrol("lab")
    body, headers = box.report(1, installed={"scale": {"version": "1", "stage": "production"}},
                               health={"status": "ok", "outbox_pending": 0})
    answer = client.post("/v1/reports", content=body, headers=headers)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"ack": 1, "seq": 1, "duplicate": False}
    listed = client.get("/v1/devices", headers=operator).json()
    assert [d["id"] for d in listed] == [box.device_id]
    device = listed[0]
    assert device["group"] == "lab" and device["profile"] == "x86_64-avx2"
    assert device["installed"] == {"scale": {"version": "1", "stage": "production"}}
    assert device["health"]["status"] == "ok" and device["last_seen"]
    assert device["reports"] == {"acked_through": 1, "highest": 1, "missing": 0,
                                 "pending_on_box": 0}


def test_report_signed_by_an_unknown_key_is_401(groups, enrol, client):
    box = enrol("lab")
    body, headers = box.report(1, key=Ed25519PrivateKey.generate())
    forged = client.post("/v1/reports", content=body, headers=headers)
    assert forged.status_code == 401 and "does not verify" in forged.json()["error"]

    stranger = Box()
    stranger.device_id = "box-00000000000000000000"
    body, headers = stranger.report(1)
    unknown = client.post("/v1/reports", content=body, headers=headers)
    assert unknown.status_code == 401 and "unknown device" in unknown.json()["error"]

    body, headers = box.report(1)
    unsigned = client.post("/v1/reports", content=body,
                           headers={"X-Device-Id": box.device_id})
    assert unsigned.status_code == 401 and "must be signed" in unsigned.json()["error"]
    bad_base64 = client.post("/v1/reports", content=body,
                             headers={**headers, "X-Device-Signature": "%%%"})
    assert bad_base64.status_code == 401


def test_replayed_report_is_stored_once_and_acknowledged_idempotently(hub, groups, enrol,
                                                                      client):
    box = enrol("lab")
    body, headers = box.report(1, health={"status": "ok"})
    first = client.post("/v1/reports", content=body, headers=headers)
    replay = client.post("/v1/reports", content=body, headers=headers)
    assert first.status_code == replay.status_code == 200
    assert first.json()["duplicate"] is False
    assert replay.json() == {"ack": 1, "seq": 1, "duplicate": True}
    with hub.store.read() as conn:
        assert db.count_reports(conn, box.device_id) == 1
        assert db.get_report(conn, box.device_id, 1)["body"] == body


def test_oversized_report_is_413_before_it_is_read(hub_settings, groups, enrol, client):
    box = enrol("lab")
    padding = "x" * hub_settings.report_max_bytes
    body, headers = box.report(1, metrics={"padding": padding})
    answer = client.post("/v1/reports", content=body, headers=headers)
    assert answer.status_code == 413 and "more than this hub accepts" in answer.json()["error"]
    # not even the signature is looked at: an unsigned oversized body is 413 too
    assert client.post("/v1/reports", content=b"{" * (hub_settings.report_max_bytes + 1)
                       ).status_code == 413


def test_signed_body_that_is_not_a_report_is_400(groups, enrol, client):
    box = enrol("lab")
    body = b'{"seq": "one"}'
    signature = base64.b64encode(box.signing.sign(body)).decode()
    answer = client.post("/v1/reports", content=body, headers={
        "X-Device-Id": box.device_id, "X-Device-Signature": signature})
    assert answer.status_code == 400
    other = json.dumps({"device_id": "box-someone-else", "seq": 1}).encode()
    answer = client.post("/v1/reports", content=other, headers={
        "X-Device-Id": box.device_id,
        "X-Device-Signature": base64.b64encode(box.signing.sign(other)).decode()})
    assert answer.status_code == 400 and "reports for itself" in answer.json()["error"]


def test_ack_is_the_highest_contiguous_seq_and_a_gap_record_closes_the_hole(hub, groups,
                                                                            enrol):
    box = enrol("lab")

    def send(seq: int, **fields):
        body, headers = box.report(seq, **fields)
        return receive_report(hub, body, box.device_id, headers["X-Device-Signature"])

    assert send(1)["ack"] == 1
    assert send(3, installed={"m": {"version": "3"}})["ack"] == 1  # 2 still missing
    late = send(2, installed={"m": {"version": "2"}})
    assert late["ack"] == 3
    with hub.store.read() as conn:
        # the late, older report was stored but did not roll the state back
        assert db.get_device(conn, box.device_id)["installed"] == {"m": {"version": "3"}}
    assert send(7)["ack"] == 3
    # the box's outbox dropped 4..5 and says so in gap entry 6
    assert send(6, kind="gap", first=4, last=5, count=2, reason="outbox-full")["ack"] == 7
