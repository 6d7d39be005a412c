"""`appliance alerts list|ack|silence|silences` on a data directory, JSON and text."""

from __future__ import annotations

import json

from click.testing import CliRunner

from appliance.alerts.engine import AlertEngine
from appliance.alerts.settings import AlertSettings
from appliance.audit.log import AuditLog
from appliance.cli import main


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env={"APPLIANCE_CONFIG": ""})
    return result.exit_code, result.output


def test_list_ack_and_silence_from_the_command_line(data_dir):
    engine = AlertEngine(data_dir, AlertSettings(), sinks={})
    alert = engine.fire("ModelDown", "critical", {"model": "fraud"}, source="health")
    engine.close()
    d = ["--data-dir", str(data_dir)]

    code, out = _run("alerts", "list", "--json", *d)
    assert code == 0, out
    assert [a["id"] for a in json.loads(out)] == [alert.id]

    code, out = _run("alerts", "ack", alert.id, "--comment", "on it", "--by", "alice",
                     "--json", *d)
    assert code == 0, out
    assert json.loads(out)["acked_by"] == "alice"

    code, out = _run("alerts", "silence", 'model="fraud"', "alertname=~Model.*",
                     "--duration", "2h", "--comment", "maintenance", "--by", "bob",
                     "--json", *d)
    assert code == 0, out
    silence = json.loads(out)
    assert silence["state"] == "active" and len(silence["matchers"]) == 2

    code, out = _run("alerts", "list", *d)
    assert code == 0 and "silenced" in out and "acked by alice" in out

    code, out = _run("alerts", "silence", "--expire", silence["id"], "--by", "bob", *d)
    assert code == 0 and "expired" in out
    code, out = _run("alerts", "silences", "--state", "expired", "--json", *d)
    assert [s["id"] for s in json.loads(out)] == [silence["id"]]

    log = AuditLog(data_dir)
    try:
        assert [r.kind for r in log.records()] == ["alert.silence.create",
                                                   "alert.silence.expire"]
    finally:
        log.close(checkpoint=False)


def test_command_line_mistakes_are_one_clear_error(data_dir):
    d = ["--data-dir", str(data_dir)]
    code, out = _run("alerts", "ack", "0123456789abcdef", "--json", *d)
    assert code == 1 and "no alert" in json.loads(out)["error"]
    code, out = _run("alerts", "silence", "model~=fraud", "--duration", "1h",
                     "--comment", "x", "--json", *d)
    assert code == 1 and "not understood" in json.loads(out)["error"]
    code, out = _run("alerts", "silence", "model=fraud", "--duration", "soon",
                     "--comment", "x", "--json", *d)
    assert code == 1 and "2h" in json.loads(out)["error"]
    code, out = _run("alerts", "silence", "model=fraud", "--duration", "1h", "--json", *d)
    assert code == 1 and "comment" in json.loads(out)["error"]
