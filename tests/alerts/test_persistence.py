"""Group state, inhibition and silences live in alerts.db: they hold across a restart
(a new engine on the same data directory), and silences are audit records."""

from __future__ import annotations

from alerting import Receiver

from appliance.audit import verify
from appliance.audit.log import AuditLog

TIMERS = {"group_wait_s": 30, "group_interval_s": 300, "repeat_interval_s": 3600}


def _settings(receiver: Receiver) -> dict:
    return {"sinks": {"oncall": {"type": "webhook", "url": receiver.url}}, **TIMERS}


def test_model_down_still_inhibits_drift_after_a_restart(make_engine, clock, receiver):
    engine = make_engine(**_settings(receiver))
    engine.fire("ModelDown", "critical", {"model": "fraud"}, source="health")
    clock.advance(30)
    engine.tick()
    assert len(receiver.bodies()) == 1

    engine = make_engine(**_settings(receiver))  # restart
    drift = engine.fire("DriftCritical", "critical", {"model": "fraud"}, source="drift")
    other = engine.fire("DriftCritical", "critical", {"model": "bc"}, source="drift")
    [shown] = [a for a in engine.list_alerts(name="DriftCritical") if a["id"] == drift.id]
    assert shown["inhibited_by"] != []
    for _ in range(3):
        clock.advance(300)
        engine.tick()
    told = [a["labels"]["model"] for body in receiver.bodies()[1:] for a in body["alerts"]]
    assert told == ["bc"]  # fraud's drift stays held back while fraud is down
    assert other.id != drift.id


def test_group_already_notified_is_not_notified_again_after_a_restart(
        make_engine, clock, receiver):
    engine = make_engine(**_settings(receiver))
    engine.fire("ProbeFailed", "warning", {"model": "a"})
    clock.advance(30)
    engine.tick()
    engine = make_engine(**_settings(receiver))
    clock.advance(300)
    engine.tick()
    assert len(receiver.bodies()) == 1


def test_silence_holds_across_a_restart_and_both_ends_are_audited(
        make_engine, clock, receiver, data_dir):
    engine = make_engine(**_settings(receiver))
    silence = engine.create_silence(['model="fraud"'], created_by="alice",
                                    comment="retraining", duration_s=3600)
    kept = engine.create_silence(['alertname=~"Probe.*"'], created_by="bob",
                                 comment="probe rework", duration_s=7200)
    engine = make_engine(**_settings(receiver))  # restart
    held = engine.fire("ModelDown", "critical", {"model": "fraud"})
    assert engine.get_alert(held.id)["silenced_by"] == [silence.id]
    clock.advance(30)
    engine.tick()
    assert receiver.bodies() == []

    engine.expire_silence(kept.id, "bob")
    clock.advance(3600)  # the first silence ends: fraud's alert is told now
    engine.tick()
    clock.advance(300)
    engine.tick()
    assert [a["labels"]["model"] for a in receiver.bodies()[0]["alerts"]] == ["fraud"]

    log = AuditLog(data_dir)
    try:
        records = [(r.kind, r.actor, r.data()) for r in log.records()]
        assert verify(log).ok
    finally:
        log.close(checkpoint=False)
    kinds = [(kind, actor) for kind, actor, _ in records]
    assert kinds == [("alert.silence.create", "alice"), ("alert.silence.create", "bob"),
                     ("alert.silence.expire", "bob"), ("alert.silence.expire", "appliance")]
    assert records[3][2]["reason"] == "ended"
    assert records[0][2]["silence"]["matchers"] == [
        {"name": "model", "op": "=", "value": "fraud"}]
