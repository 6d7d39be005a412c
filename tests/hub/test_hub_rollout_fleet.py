"""Staged rollouts across 1,000 simulated boxes (a real hub: database, TUF repository,
signed reports; a controllable clock): waves advance on success, a version that fails
warm-up on 10 % of boxes halts itself, and no box outside the started waves is told it."""

from __future__ import annotations

import msgspec
import pytest
from hub_helpers import built_package
from rollout_sim import MODEL, FleetSim
from sqlalchemy import select

from appliance.hub import schema
from appliance.hub import store as db
from appliance.hub import store_rollouts as rdb
from appliance.hub.audit_chain import verify_chain
from appliance.hub.fleet import add_group
from appliance.hub.publish import publish
from appliance.hub.rollout import assign, desired_for
from appliance.hub.rollout_controller import abort_breach, bucket, summary
from appliance.hub.rollout_spec import RolloutSpec
from appliance.hub.rollouts import create, resume, rollback, status

BOXES = 1000
SYNC_S, TICK_S = 60.0, 10.0


@pytest.fixture
def fleet(tmp_path, hub, publisher_key):
    """``fleet``: a group of 1,000 boxes serving scale 1, with scale 2 published."""
    add_group(hub, "fleet", actor="ops")
    for version in ("1", "2"):
        publish(hub, built_package(tmp_path, publisher_key, version=version,
                                   factor=float(version) + 1), actor="ci")

    def make(fail_share: float, seed: int = 7) -> FleetSim:
        sim = FleetSim(hub, "fleet", boxes=BOXES, seed=seed, fail_share=fail_share,
                       sync_s=SYNC_S, tick_s=TICK_S)
        assign(hub, "fleet", MODEL, "1", "production", actor="ops")
        sim.invalidate()
        for box in sim.boxes:
            box.serving[MODEL] = "1"
        return sim

    return make


def _spec() -> RolloutSpec:
    return msgspec.convert({"model": MODEL, "version": "2", "groups": ["fleet"],
                            "waves": [1, 5, 25, 100], "success_pct": 80, "timeout_s": 1800,
                            "abort": {"min_executed": 50, "threshold_pct": 5}}, RolloutSpec)


def _halt_condition_met(hub, rollout_id: str) -> bool:
    with hub.store.read() as conn:
        rollout = rdb.get_rollout(conn, rollout_id)
        return abort_breach(rollout, summary(rdb.state_counts(conn, rollout_id))) is not None


def test_warmup_failing_on_a_tenth_of_boxes_halts_within_a_sync_and_a_tick(hub, fleet):
    sim = fleet(fail_share=0.0)
    rollout = create(hub, _spec(), actor="ops")
    rid = rollout["id"]
    # one box in ten fails warm-up, in every wave: wave 1 (10 boxes, 90 % succeed)
    # advances; the halt comes once 50 boxes are done
    sim.fail_every(rid, 10, offset=9)
    assert rollout["waves"][0]["boxes"] == 10 and rollout["counts"]["members"] == 10
    sim.invalidate()
    met_at = []

    def watch(now):
        if not met_at and status(hub, rid)["status"] == "running" and (
                _halt_condition_met(hub, rid)):
            met_at.append(now)

    sim.on_report = watch
    sim.run(until=lambda: status(hub, rid)["status"] != "running", limit_s=6 * 3600)

    final = status(hub, rid)
    assert final["status"] == "halted", final
    halted_at = next(at for at, r, what in sim.decisions if r == rid and what == "halted")
    # the halt fired once min_executed was reached and failures crossed the threshold
    assert met_at, "the abort criteria were never met before the halt"
    assert (halted_at - met_at[0]).total_seconds() <= SYNC_S + TICK_S
    reason = final["reason"]
    assert reason["kind"] == "abort"
    assert reason["executed"] >= 50 and reason["failure_pct"] >= 5
    assert reason["failed_by_type"].get("warmup_failed", 0) == reason["failures"]
    assert final["counts"]["members"] < BOXES  # it stopped before the whole fleet

    with hub.store.read() as conn:
        members = {m["device_id"]: m for m in rdb.members(conn, rid)}
        published = {b.device_id: desired_for(hub, conn, db.get_device(conn, b.device_id))
                     for b in sim.boxes}
    # no box outside the started waves ever got the new version
    outside = [b for b in sim.boxes if b.device_id not in members]
    assert outside and all(b.seen_versions == {"1"} and b.serving[MODEL] == "1"
                           for b in outside)
    # failed boxes serve their old version, and the hub tells them (and the boxes not
    # done yet) the old one again; boxes that succeeded stay on the new version
    for box in sim.boxes:
        member = members.get(box.device_id)
        if member is None:
            continue
        if member["state"] == "failed":
            assert box.serving[MODEL] == "1" and published[box.device_id][MODEL]["version"] == "1"
        elif member["state"] == "pending":
            assert published[box.device_id][MODEL]["version"] == "1"
        else:
            assert published[box.device_id][MODEL]["version"] == "2"
    assert verify_chain(hub.store)["ok"]

    # rollback: every box of the rollout is told version 1 and goes back within a cycle
    rollback(hub, rid, actor="ops")
    sim.invalidate()
    sim.run(until=lambda: False, limit_s=SYNC_S * 1.2)
    assert {b.serving[MODEL] for b in sim.boxes} == {"1"}


def test_rollout_without_failures_advances_wave_by_wave_and_completes(hub, fleet):
    sim = fleet(fail_share=0.0, seed=3)
    rid = create(hub, _spec(), actor="ops")["id"]
    sim.invalidate()
    sim.run(until=lambda: status(hub, rid)["status"] != "running", limit_s=6 * 3600)

    final = status(hub, rid)
    assert final["status"] == "completed", final
    assert [w["boxes"] for w in final["waves"]] == [10, 50, 250, 1000]
    assert [what for _, r, what in sim.decisions if r == rid] == [
        "wave 1", "wave 2", "wave 3", "completed"]
    # completion needs success_pct (80 %) done; the rest are told and follow within a sync
    sim.run(until=lambda: False, limit_s=SYNC_S * 1.2)
    assert {b.serving[MODEL] for b in sim.boxes} == {"2"}
    with hub.store.read() as conn:  # the version is now the group's assignment
        assert {a["model"]: a["version"] for a in db.current_assignments(conn, "fleet")} == {
            MODEL: "2"}


def test_a_first_wave_that_cannot_reach_its_success_share_halts_and_resume_accepts_it(
        hub, fleet):
    sim = fleet(fail_share=0.0, seed=5)
    rid = create(hub, _spec(), actor="ops")["id"]
    first = sorted(sim.boxes, key=lambda b: bucket(rid, b.device_id))[:10]
    for box in first[:3]:  # 3 of the 10 first-wave boxes fail: 70 % < 80 %, 10 < 50 done
        box.fails_warmup = True
    sim.invalidate()
    sim.run(until=lambda: status(hub, rid)["status"] != "running", limit_s=3600)

    final = status(hub, rid)
    assert final["status"] == "halted", final
    assert final["reason"]["kind"] == "success_unreachable"
    assert final["reason"]["failures"] == 3 and final["reason"]["best_pct"] == 70.0
    assert final["counts"]["members"] == 10
    with hub.store.read() as conn:
        halts = [r for r in conn.execute(select(schema.audit.c.action)).mappings()
                 if r["action"] == "rollout.halt"]
    assert len(halts) == 1

    # the operator accepts the three failures: the wave counts without them and advances
    resume(hub, rid, actor="ops")
    sim.invalidate()
    sim.run(until=lambda: status(hub, rid)["wave"] >= 1, limit_s=SYNC_S * 3)
    assert status(hub, rid)["wave"] == 1 and status(hub, rid)["status"] == "running"
