"""Attacks the TUF client refuses, served by the real hub's static repository: nothing is
installed, the current version keeps serving, and one audit-visible registry event names
the attack (not one per cycle while it repeats)."""

from __future__ import annotations

import json
import time

import pytest
from helpers.packages import signed_package

from appliance.hub.publish import publish
from appliance.hub.rollout import assign
from appliance.hub.tuf_layout import RepoLayout
from appliance.sync.cycle import run_cycle
from appliance.sync.enroll import enroll
from appliance.sync.staleness import hub_sync_dependency


def refusal_events(registry) -> list[dict]:
    rows = registry.db.execute("SELECT actor, detail FROM events WHERE action = "
                               "'sync.refused' ORDER BY id").fetchall()
    return [{"actor": actor, **json.loads(detail)} for actor, detail in rows]


@pytest.fixture
def ci(hub, publisher, tmp_path):
    """ci(version, factor): publish a signed scale package on the hub."""
    (tmp_path / "ci").mkdir()
    return lambda version, factor=2.0: publish(
        hub, signed_package(tmp_path / "ci", publisher, version=version, factor=factor),
        actor="ci")


@pytest.fixture
def serving_v1(hub, hub_url, box, ci, enrolment_token):
    """A box serving scale 1 in production."""
    one = box()
    enroll(one.settings, hub_url, enrolment_token(), hardware={"profile": "test"})
    ci("1")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    assert run_cycle(one.box()).status == "ok"
    return one


def assert_still_serving_v1(one, kind: str) -> None:
    assert [v.version for v in one.registry.versions("scale")] == ["1"]
    assert one.stage_of("scale", "1") == "production"
    events = refusal_events(one.registry)
    assert len(events) == 1 and events[0]["kind"] == kind and events[0]["actor"] == "hub-sync"


def test_a_tampered_target_on_the_static_server_installs_nothing(hub, serving_v1, ci):
    one = serving_v1
    record = ci("2", 3.0)
    assign(hub, "lab", "scale", "2", "production", actor="ops")
    layout = RepoLayout(hub.settings.repo_dir)
    info = layout.read().find_target(record["target_path"])
    path = layout.target_file(info)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    result = run_cycle(one.box())
    assert result.status == "refused" and result.refusal["kind"] == "bad-hash"
    assert_still_serving_v1(one, "bad-hash")
    assert run_cycle(one.box()).status == "refused"  # the same attack again
    assert_still_serving_v1(one, "bad-hash")  # ... and still one event
    facts, reasons = hub_sync_dependency(one.settings.data_dir)
    assert facts["status"] == "degraded" and facts["last_refusal"].startswith("bad-hash")
    assert any("update refused (bad-hash" in r for r in reasons)


def test_an_older_timestamp_replayed_is_a_refused_rollback(hub, serving_v1, ci):
    one = serving_v1
    timestamp = hub.settings.repo_dir / "metadata" / "timestamp.json"
    seen_first = timestamp.read_bytes()
    ci("2", 3.0)
    assign(hub, "lab", "scale", "2", "production", actor="ops")
    assert run_cycle(one.box()).status == "ok"  # the box has seen a newer timestamp now
    ci("3", 4.0)
    assign(hub, "lab", "scale", "3", "production", actor="ops")
    current = timestamp.read_bytes()
    timestamp.write_bytes(seen_first)  # a mirror replaying an older repository state
    result = run_cycle(one.box())
    assert result.status == "refused" and result.refusal["kind"] == "rollback"
    assert [e["kind"] for e in refusal_events(one.registry)] == ["rollback"]
    assert one.stage_of("scale", "2") == "production"
    assert [v.version for v in one.registry.versions("scale")] == ["1", "2"]
    timestamp.write_bytes(current)  # the mirror is fixed: one cycle converges
    assert run_cycle(one.box()).status == "ok"
    assert one.stage_of("scale", "3") == "production"
    assert hub_sync_dependency(one.settings.data_dir)[0]["status"] == "ok"


def test_an_expired_timestamp_is_a_refused_freeze(hub, serving_v1, ci):
    one = serving_v1
    ci("2", 3.0)
    assign(hub, "lab", "scale", "2", "production", actor="ops")
    hub.repository.refresh(expire_timestamp_s=1)
    time.sleep(1.5)
    result = run_cycle(one.box())
    assert result.status == "refused" and result.refusal["kind"] == "freeze"
    assert_still_serving_v1(one, "freeze")
    hub.repository.refresh()  # the hub's scheduler re-signs: the box converges
    assert run_cycle(one.box()).status == "ok"
    assert one.stage_of("scale", "2") == "production"
