"""Grouping and escalation follow their timeline, driven by the test's clock."""

from __future__ import annotations

from alerting import Receiver

TIMERS = {"group_wait_s": 30, "group_interval_s": 300, "repeat_interval_s": 3600}


def _sinks(receiver: Receiver, *names: str) -> dict:
    return {name: {"type": "webhook", "url": f"{receiver.url}/{name}"} for name in names}


def test_first_notification_waits_group_wait_then_changes_wait_group_interval(
        make_engine, clock, receiver):
    engine = make_engine(sinks=_sinks(receiver, "oncall"), **TIMERS)
    engine.fire("ModelDown", "critical", {"model": "a"}, source="health")
    engine.tick()
    clock.advance(29)
    engine.tick()
    assert receiver.bodies() == []
    clock.advance(1)
    engine.tick()
    [first] = receiver.bodies()
    assert [a["labels"]["model"] for a in first["alerts"]] == ["a"]

    clock.advance(10)
    engine.fire("ModelDown", "critical", {"model": "b"}, source="health")
    engine.tick()
    clock.advance(280)  # 290 s after the first flush: not yet
    engine.tick()
    assert len(receiver.bodies()) == 1
    clock.advance(10)
    engine.tick()
    second = receiver.bodies()[1]
    assert sorted(a["labels"]["model"] for a in second["alerts"]) == ["a", "b"]


def test_unchanged_group_repeats_after_repeat_interval_only(make_engine, clock, receiver):
    engine = make_engine(sinks=_sinks(receiver, "oncall"), **TIMERS)
    engine.fire("ProbeFailed", "warning", {"model": "a"})
    clock.advance(30)
    engine.tick()
    for _ in range(11):  # group_interval ticks without a change
        clock.advance(300)
        engine.tick()
    assert len(receiver.bodies()) == 1
    clock.advance(300)  # 3600 s since the last notification
    engine.tick()
    assert len(receiver.bodies()) == 2


def test_resolution_is_notified_at_the_next_group_interval(make_engine, clock, receiver):
    engine = make_engine(sinks=_sinks(receiver, "oncall"), **TIMERS)
    engine.fire("ModelDown", "critical", {"model": "a"})
    clock.advance(30)
    engine.tick()
    clock.advance(60)
    engine.resolve("ModelDown", {"model": "a"})
    engine.tick()
    assert len(receiver.bodies()) == 1
    clock.advance(240)
    engine.tick()
    resolved = receiver.bodies()[1]
    assert resolved["status"] == "resolved"
    assert resolved["alerts"][0]["endsAt"] is not None
    clock.advance(3600)
    engine.tick()
    assert len(receiver.bodies()) == 2  # nothing owed: the group is gone


def test_unacknowledged_alert_escalates_after_t_and_ack_stops_it(make_engine, clock,
                                                                 receiver):
    engine = make_engine(
        sinks=_sinks(receiver, "oncall", "lead", "director"),
        escalation=[{"after_s": 0, "sinks": ["oncall"]},
                    {"after_s": 600, "sinks": ["lead"]},
                    {"after_s": 1800, "sinks": ["director"]}], **TIMERS)
    alert = engine.fire("ModelDown", "critical", {"model": "a"})
    clock.advance(30)
    engine.tick()
    assert [p for p, _ in receiver.posts] == ["/oncall"]

    clock.advance(569)
    engine.tick()
    assert len(receiver.posts) == 1
    clock.advance(1)  # unacknowledged for 600 s: level 1, told at once
    report = engine.tick()
    assert report.escalated == 1
    assert sorted(p for p, _ in receiver.posts[1:]) == ["/lead", "/oncall"]
    assert receiver.posts[-1][1]["level"] == 1

    engine.ack(alert.id, "alice", "looking")
    clock.advance(1200)  # past 1800 s: would be level 2, but it is acknowledged
    engine.tick()
    clock.advance(3600)  # and an acknowledged alert is not repeated either
    engine.tick()
    assert "/director" not in [p for p, _ in receiver.posts]
    assert len(receiver.posts) == 3
    assert engine.get_alert(alert.id)["acked_by"] == "alice"
    assert engine.get_alert(alert.id)["level"] == 1


def test_hundred_drift_alerts_within_ten_seconds_give_one_notification(
        make_engine, clock, receiver):
    engine = make_engine(sinks=_sinks(receiver, "oncall"), **TIMERS)
    for i in range(100):
        engine.fire("DriftWarning", "warning", {"model": f"m{i % 7}", "feature": f"f{i}"},
                    {"psi": "0.3"}, source="drift")
        clock.advance(0.1)
        engine.tick()
    for _ in range(30):
        clock.advance(1)
        engine.tick()
    [notification] = receiver.bodies()
    assert len(notification["alerts"]) == 100
    assert notification["group_labels"] == {"alertname": "DriftWarning"}
