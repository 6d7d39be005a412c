"""The box's audit records travel to the hub in its reports, each once, and the hub
witnesses the chain: a log rewritten on the box after the hub saw it shows as broken."""

from __future__ import annotations

import json
import sqlite3

import pytest

from appliance.audit.log import AuditLog
from appliance.audit.records import Entry, chain_hash
from appliance.hub import store as db
from appliance.hub.audit_witness import witness
from appliance.hub.fleet import list_devices
from appliance.sync.cycle import open_outbox, run_cycle
from appliance.sync.enroll import enroll


@pytest.fixture
def enrolled(box, hub_url, enrolment_token):
    def make(name: str = "box1", **sync: object):
        one = box(name, **sync)
        enroll(one.settings, hub_url, enrolment_token("lab"), hardware={"profile": "t"})
        return one
    return make


def write_audit(data_dir, n: int, start: int = 0) -> None:
    with AuditLog(data_dir) as log:
        log.append_many([Entry("model.load", f"user{i}", {"model": "m", "i": i})
                         for i in range(start, start + n)])


def hub_records(hub) -> list[dict]:
    """Every audit record in the reports the hub stored, in report order."""
    device_id = list_devices(hub)[0]["id"]
    out: list[dict] = []
    with hub.store.read() as conn:
        for seq in db.report_seqs_after(conn, device_id, 0):
            out += json.loads(db.get_report(conn, device_id, seq)["body"])["audit_records"]
    return out


def test_audit_records_since_the_last_report_reach_the_hub_once_each(hub, enrolled):
    one = enrolled()
    write_audit(one.settings.data_dir, 5)
    run_cycle(one.box())
    write_audit(one.settings.data_dir, 3, start=5)
    run_cycle(one.box())
    run_cycle(one.box())  # nothing new: no record twice

    records = hub_records(hub)
    seqs = [r["seq"] for r in records]
    assert seqs == sorted(set(seqs)) and len(seqs) >= 8
    assert [json.loads(r["body"])["i"] for r in records if r["kind"] == "model.load"] == list(
        range(8))
    audit = list_devices(hub)[0]["audit"]
    assert audit["status"] == "ok" and audit["seq"] == seqs[-1]


def test_a_log_ahead_of_one_report_goes_in_several_entries_within_the_cycle_budget(
        hub, enrolled):
    one = enrolled(audit_records_per_cycle=1200)
    write_audit(one.settings.data_dir, 1500)
    result = run_cycle(one.box())
    assert result.upload is not None and result.upload.sent == 3  # report + 2 audit entries
    assert len(hub_records(hub)) == 1200
    report = json.loads(_newest_report(hub))
    assert report["metrics"]["audit_behind"] > 0
    run_cycle(one.box())
    assert [r["seq"] for r in hub_records(hub)] == list(range(1, len(hub_records(hub)) + 1))
    assert list_devices(hub)[0]["audit"]["status"] == "ok"


def _newest_report(hub) -> bytes:
    device_id = list_devices(hub)[0]["id"]
    with hub.store.read() as conn:
        seqs = list(db.report_seqs_after(conn, device_id, 0))
        for seq in reversed(seqs):
            body = db.get_report(conn, device_id, seq)["body"]
            if json.loads(body)["kind"] == "report":
                return bytes(body)
    raise AssertionError("no report")


def test_zero_records_per_cycle_keeps_the_records_on_the_box(hub, enrolled):
    one = enrolled(audit_records_per_cycle=0)
    write_audit(one.settings.data_dir, 5)
    run_cycle(one.box())
    assert hub_records(hub) == []
    assert list_devices(hub)[0]["audit"]["status"] == "none"


def test_a_record_rewritten_after_the_hub_saw_it_shows_the_device_broken(hub, enrolled):
    one = enrolled()
    data_dir = one.settings.data_dir
    write_audit(data_dir, 4)
    run_cycle(one.box())
    # rewrite record 2 and re-hash the chain from there (what someone with SQL access does)
    conn = sqlite3.connect(data_dir / "audit.db")
    rows = conn.execute("SELECT seq, at, kind, actor, body, prev_hash FROM records "
                        "ORDER BY seq").fetchall()
    prev = None
    for seq, at, kind, actor, body, prev_hash in rows:
        if seq >= 2:
            body = body.replace('"i":1', '"i":100') if seq == 2 else body
            prev_hash = prev if prev is not None else prev_hash
            new = chain_hash(prev_hash, seq, at, kind, actor, body)
            conn.execute("UPDATE records SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                         (body, prev_hash, new, seq))
            prev = new
    conn.commit()
    conn.close()
    write_audit(data_dir, 1, start=10)  # the next record extends the rewritten chain
    run_cycle(one.box())

    audit = list_devices(hub)[0]["audit"]
    assert audit["status"] == "broken"
    assert "rewritten" in audit["problems"][0]


def test_witness_names_forged_records_and_gaps():
    def record(seq: int, prev: str, body: str = "{}") -> dict:
        at, kind, actor = "2026-01-01T00:00:00.000000+00:00", "k", "a"
        return {"seq": seq, "at": at, "kind": kind, "actor": actor, "body": body,
                "prev_hash": prev, "hash": chain_hash(prev, seq, at, kind, actor, body)}

    r1 = record(1, "0" * 64)
    r2 = record(2, r1["hash"])
    r5 = record(5, "f" * 64)
    state = witness(None, [r1, r2])
    assert state["status"] == "ok" and state["seq"] == 2 and state["records"] == 2
    gapped = witness(state, [r5])
    assert gapped["status"] == "gap" and "3..4" in gapped["problems"][0]
    forged = dict(record(6, r5["hash"]), body='{"x":1}')
    broken = witness(gapped, [forged, {"seq": "x"}])
    assert broken["status"] == "broken"
    assert any("does not hash" in p for p in broken["problems"])
    assert witness(state, [r1, r2]) == state  # resends change nothing


def test_outbox_cursor_moves_with_the_entry_that_carries_it(box):
    one = box()
    with open_outbox(one.box()) as outbox:
        assert outbox.cursor("audit") == 0
        outbox.append("report", {"x": 1}, cursor=("audit", 42))
        assert outbox.cursor("audit") == 42
