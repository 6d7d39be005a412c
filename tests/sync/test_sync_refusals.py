"""A refused update (an attack the TUF client caught): nothing installed, the current
version keeps serving, and one audit-visible registry event names the attack."""

from __future__ import annotations

import json

import pytest
from sync_helpers import signed_package

from appliance.hub.publish import publish
from appliance.hub.rollout import assign
from appliance.sync.cycle import run_cycle
from appliance.sync.enroll import enroll
from appliance.sync.errors import SyncRefused
from appliance.sync.staleness import hub_sync_dependency


def refusal_events(registry) -> list[dict]:
    rows = registry.db.execute("SELECT actor, detail FROM events WHERE action = "
                               "'sync.refused' ORDER BY id").fetchall()
    return [{"actor": actor, **json.loads(detail)} for actor, detail in rows]


class Refusing:
    """A TUF client whose refresh is refused, as python-tuf refuses a rollback."""

    def __init__(self, kind: str, message: str) -> None:
        self.error = SyncRefused(kind, message)

    def refresh(self) -> None:
        raise self.error

    def desired(self, device_id):  # pragma: no cover - never reached
        raise AssertionError

    def download(self, target_path, dest_dir):  # pragma: no cover - never reached
        raise AssertionError


@pytest.fixture
def serving_v1(hub, hub_url, box, publisher, enrolment_token, tmp_path):
    """A box serving scale 1 in production, with scale 2 assigned since."""
    one = box()
    enroll(one.settings, hub_url, enrolment_token(), hardware={"profile": "test"})
    (tmp_path / "ci").mkdir()
    publish(hub, signed_package(tmp_path / "ci", publisher, version="1"), actor="ci")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    assert run_cycle(one.box()).status == "ok"
    publish(hub, signed_package(tmp_path / "ci", publisher, version="2", factor=3.0),
            actor="ci")
    assign(hub, "lab", "scale", "2", "production", actor="ops")
    return one


def test_a_refused_update_installs_nothing_and_one_event_names_the_attack(serving_v1):
    one = serving_v1
    def refuse(*_):
        return Refusing("rollback", "snapshot version 2 is older than the trusted 5")
    result = run_cycle(one.box(), client_factory=refuse)
    assert result.status == "refused"
    assert result.refusal == {"kind": "rollback",
                              "message": "snapshot version 2 is older than the trusted 5"}
    assert [v.version for v in one.registry.versions("scale")] == ["1"]
    assert one.stage_of("scale", "1") == "production"
    assert refusal_events(one.registry) == [
        {"actor": "hub-sync", "kind": "rollback",
         "message": "snapshot version 2 is older than the trusted 5"}]
    run_cycle(one.box(), client_factory=refuse)  # the same attack again: no second event
    assert len(refusal_events(one.registry)) == 1
    facts, reasons = hub_sync_dependency(one.settings.data_dir)
    assert facts["status"] == "degraded" and facts["last_refusal"].startswith("rollback")
    assert any("update refused (rollback" in r for r in reasons)


def test_after_a_refusal_a_good_cycle_converges_and_clears_it(serving_v1):
    one = serving_v1
    run_cycle(one.box(), client_factory=lambda *_: Refusing("freeze", "timestamp expired"))
    result = run_cycle(one.box())
    assert result.status == "ok"
    assert one.stage_of("scale", "2") == "production"
    facts, reasons = hub_sync_dependency(one.settings.data_dir)
    assert facts["status"] == "ok" and reasons == []
