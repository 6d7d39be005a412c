"""Sinks: a webhook that is down gets everything once it is back; Alertmanager gets its
v2 JSON; a syslog collector gets RFC 5424 lines."""

from __future__ import annotations

import re
import socket

from alerting import Receiver

from appliance.alerts.outbox import rows

TIMERS = {"group_wait_s": 0, "group_interval_s": 60, "repeat_interval_s": 3600}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_webhook_down_is_retried_with_backoff_and_gets_everything_when_back(
        make_engine, clock):
    port = _free_port()  # nothing listens there yet
    engine = make_engine(sinks={"hook": {"type": "webhook",
                                         "url": f"http://127.0.0.1:{port}/alerts"}},
                         **TIMERS)
    engine.fire("ModelDown", "critical", {"model": "a"})
    engine.tick()
    clock.advance(5)  # before the first retry: a second group's notification queues
    engine.fire("ProbeFailed", "warning", {"model": "b"})
    engine.tick()
    [first, second] = rows(engine.store)
    assert first["status"] == second["status"] == "pending"
    assert first["attempts"] == 1 and "Connect" in first["last_error"]
    # attempt 1 at T, then +10 s, +20 s, +40 s: backoff doubles, capped at 80 s
    waits = []
    for _ in range(4):
        before = rows(engine.store)[0]
        clock.now = before["next_attempt_at"] - 0.5
        engine.tick()
        assert rows(engine.store)[0]["attempts"] == before["attempts"]  # not yet due
        clock.now = before["next_attempt_at"]
        engine.tick()
        after = rows(engine.store)[0]
        assert after["attempts"] == before["attempts"] + 1
        waits.append(after["next_attempt_at"] - clock.now)
    assert waits == [20, 40, 80, 80]
    assert rows(engine.store, "pending") and not rows(engine.store, "failed")

    receiver = Receiver(port)  # the receiver comes back
    try:
        clock.advance(80)
        engine.tick()
        delivered = receiver.bodies("/alerts")
    finally:
        receiver.stop()
    assert [[a["labels"]["alertname"] for a in body["alerts"]] for body in delivered] == [
        ["ModelDown"], ["ProbeFailed"]]  # in order, nothing lost
    assert {r["status"] for r in rows(engine.store)} == {"delivered"}


def test_alertmanager_receives_the_v2_alerts_shape(make_engine, clock, receiver):
    engine = make_engine(sinks={"am": {"type": "alertmanager", "url": receiver.url}},
                         external_url="https://box7.example", **TIMERS)
    alert = engine.fire("LatencySLOBreach", "warning", {"model": "bc"},
                        {"summary": "p95 412 ms"}, source="metrics")
    engine.tick()
    [posted] = receiver.bodies("/api/v2/alerts")
    assert isinstance(posted, list)
    [sent] = posted
    assert set(sent) == {"labels", "annotations", "startsAt", "endsAt", "generatorURL"}
    assert sent["labels"] == {"alertname": "LatencySLOBreach", "model": "bc",
                              "severity": "warning"}
    assert sent["annotations"] == {"summary": "p95 412 ms"}
    assert sent["generatorURL"] == f"https://box7.example/v1/alerts?id={alert.id}"
    assert sent["startsAt"] < sent["endsAt"]

    clock.advance(10)
    engine.resolve("LatencySLOBreach", {"model": "bc"})
    clock.advance(60)
    engine.tick()
    [resolved] = receiver.bodies("/api/v2/alerts")[1]
    assert resolved["endsAt"].startswith("2030-03-17T")
    assert resolved["endsAt"] < sent["endsAt"]


def test_syslog_collector_receives_an_rfc5424_line(make_engine, clock, udp_listener):
    port = udp_listener.getsockname()[1]
    engine = make_engine(sinks={"siem": {"type": "syslog", "host": "127.0.0.1",
                                         "port": port}}, **TIMERS)
    alert = engine.fire("ModelDown", "critical", {"model": "fraud"}, source="health")
    engine.tick()
    line = udp_listener.recv(65535).decode()
    # <PRI>1 TIMESTAMP HOST APP PROCID MSGID [SD] MSG; facility 1 (user) + crit (2) = 10
    found = re.match(r'^<10>1 (\S+) \S+ appliance - alert\.firing '
                     r'\[alert@32473 seq="\d+" hash="([0-9a-f]{16})" prevHash="[0-9a-f]+" '
                     r'actor="health"\] (\{.*\})$', line)
    assert found, line
    assert found.group(1).startswith("2030-03-17T") and found.group(1).endswith("Z")
    assert found.group(2) == alert.id
    assert '"alertname":"ModelDown"' in found.group(3)
