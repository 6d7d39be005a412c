"""The default routing rule, as appliance/routing states it and lifecycle/stages.py says."""

from __future__ import annotations

from appliance.registry import VersionRecord
from appliance.routing.policy import default_route
from appliance.runtime.served import ServedVersion


def served(version: str, stage: str, *, ready: bool = True,
           changed: str | None = None) -> ServedVersion:
    record = VersionRecord("m", version, "onnx", "m.onnx", [], [], [], "d", stage,
                           "2026-01-01", "test", "test", stage_changed_at=changed)
    return ServedVersion(record, state="ready" if ready else "loading")


def route(*versions: ServedVersion) -> tuple[str, str] | None:
    policy = default_route({s.record.version: s for s in versions})
    if policy is None:
        return None
    decision = policy.decide()
    return decision.served.record.version, decision.label


def test_production_answers_when_ready():
    assert route(served("1", "deprecated"), served("2", "production"),
                 served("3", "registered")) == ("2", "production")


def test_previous_production_answers_while_production_loads():
    assert route(served("1", "deprecated", changed="2026-01-01"),
                 served("2", "deprecated", changed="2026-02-01"),
                 served("3", "production", ready=False)) == ("2", "previous-production")


def test_newest_registered_version_by_version_order_not_text():
    assert route(served("9", "registered"), served("10", "registered")) == (
        "10", "newest-registered")


def test_shadow_and_canary_get_no_default_traffic():
    assert route(served("1", "shadow"), served("2", "canary")) is None


def test_the_decision_is_the_same_object_every_time():
    policy = default_route({"1": served("1", "production")})
    assert policy is not None and policy.decide() is policy.decide()
