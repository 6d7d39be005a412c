"""Built-in rules are data evaluated over a snapshot; impact raises severity."""

from __future__ import annotations

import pytest

from appliance.errors import BadRequest


def _firing(engine) -> dict[str, str]:
    return {f'{a["name"]}:{a["labels"]["model"]}': a["severity"]
            for a in engine.list_alerts(state="firing")}


def test_snapshot_fires_and_resolves_the_builtin_rules(make_engine):
    engine = make_engine(rules={"LatencySLOBreach": {"value": 300}})
    engine.evaluate({"health": {"a": "down", "b": "up"},
                     "drift": {"b": {"status": "critical", "score": 0.4}},
                     "probes": {"c": {"ok": False}},
                     "metrics": {"latency_p95_ms": {"b": 299.0, "c": 301.0}}})
    assert _firing(engine) == {"ModelDown:a": "critical", "DriftCritical:b": "critical",
                               "ProbeFailed:c": "warning", "LatencySLOBreach:c": "warning"}
    # a section present decides its rules; the drift section absent here decides nothing
    engine.evaluate({"health": {"b": "up"}, "probes": {"c": {"ok": True}}})
    assert _firing(engine) == {"DriftCritical:b": "critical",
                               "LatencySLOBreach:c": "warning"}


def test_high_impact_model_raises_severity_one_level(make_engine):
    engine = make_engine(models={"fraud": {"impact": "high"}})
    engine.fire("DriftWarning", "warning", {"model": "fraud"})
    engine.fire("ProbeFailed", "info", {"model": "fraud"})
    engine.fire("ModelDown", "critical", {"model": "fraud"})
    engine.fire("DriftWarning", "warning", {"model": "bc"})
    shown = {(a["name"], a["labels"]["model"]): (a["base_severity"], a["severity"])
             for a in engine.list_alerts()}
    assert shown == {("DriftWarning", "fraud"): ("warning", "critical"),
                     ("ProbeFailed", "fraud"): ("info", "warning"),
                     ("ModelDown", "fraud"): ("critical", "critical"),
                     ("DriftWarning", "bc"): ("warning", "warning")}


def test_firing_with_an_unknown_severity_is_refused(make_engine):
    engine = make_engine()
    with pytest.raises(BadRequest, match="info, warning or critical"):
        engine.fire("ModelDown", "page-everyone", {"model": "a"})
