"""Sync cycles against a real hub on 127.0.0.1: a published, assigned package installed
and promoted through the lifecycle on one box; failed loads; a hub that goes away."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from helpers import make_services, serve
from helpers.packages import signed_package
from sync_helpers import closed_port

from appliance.hub.fleet import list_devices
from appliance.hub.publish import publish
from appliance.hub.rollout import assign
from appliance.lifecycle.promotion import stage_history
from appliance.sync.box import box_of_services
from appliance.sync.cycle import run_cycle
from appliance.sync.enroll import enroll
from appliance.sync.state import read_state
from appliance.sync.status import sync_status

HARDWARE = {"profile": "x86_64-avx2"}


@pytest.fixture
def published(hub, publisher, tmp_path):
    """publish(version, factor) -> the hub's package record."""
    def publish_one(version: str = "1", factor: float = 2.0):
        pkg = signed_package(tmp_path / "ci", publisher, version=version, factor=factor)
        return publish(hub, pkg, actor="ci")
    (tmp_path / "ci").mkdir()
    return publish_one


@pytest.fixture
def enrolled(box, hub_url, enrolment_token):
    """enrolled(name, group, **sync) -> an enrolled TestBox."""
    def make(name: str = "box1", group: str = "lab", **sync: object):
        one = box(name, **sync)
        enroll(one.settings, hub_url, enrolment_token(group), hardware=HARDWARE)
        return one
    return make


def test_a_cycle_installs_and_promotes_the_assigned_version(hub, published, enrolled):
    one = enrolled()
    published("1")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    lines: list[str] = []
    result = run_cycle(one.box(lines))
    assert result.status == "ok", result.error
    assert result.applied.installed == [{"model": "scale", "version": "1"}]
    assert one.stage_of("scale", "1") == "production"
    history = stage_history(one.registry, "scale", "1")
    assert history[-1]["actor"] == "hub-sync" and history[-1]["to"] == "production"
    assert any("downloading packages/scale/1/" in line for line in lines)
    assert result.upload is not None and result.upload.error is None
    device = list_devices(hub)[0]
    assert device["installed"]["scale"][0]["stage"] == "production"
    assert device["reports"]["acked_through"] == result.upload.acked


def test_a_second_cycle_downloads_nothing_and_changes_nothing(hub, published, enrolled):
    one = enrolled()
    published("1")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    run_cycle(one.box())
    again = run_cycle(one.box())
    assert again.status == "ok" and again.applied.downloaded == 0
    assert again.applied.unchanged == [{"model": "scale", "version": "1",
                                        "stage": "production"}]
    assert not again.applied.installed and not again.applied.promoted


def test_a_new_assignment_switches_over_and_deprecates_the_old(hub, published, enrolled):
    one = enrolled()
    other = enrolled("box2", group="field")
    published("1")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    run_cycle(one.box())
    published("2", factor=3.0)
    assign(hub, "lab", "scale", "2", "production", actor="ops")
    result = run_cycle(one.box())
    assert result.applied.promoted[0]["demoted"] == "1"
    assert (one.stage_of("scale", "2"), one.stage_of("scale", "1")) == (
        "production", "deprecated")
    assert run_cycle(other.box()).status == "ok"  # group field: untouched
    assert other.registry.models() == []


def test_a_version_that_fails_to_load_keeps_the_old_one_and_is_reported(hub, published,
                                                                       enrolled):
    one = enrolled()
    published("1")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    run_cycle(one.box())
    published("2", factor=3.0)
    assign(hub, "lab", "scale", "2", "production", actor="ops")
    box = one.box()

    def broken(record):
        raise RuntimeError("out of device memory")
    box.loader = broken
    result = run_cycle(box)
    assert result.status == "ok"
    assert result.applied.failed[0]["model"] == "scale"
    assert "out of device memory" in result.applied.failed[0]["reason"]
    assert (one.stage_of("scale", "1"), one.stage_of("scale", "2")) == ("production",
                                                                        "failed")
    installed = {v["version"]: v for v in list_devices(hub)[0]["installed"]["scale"]}
    assert installed["2"]["stage"] == "failed" and installed["1"]["stage"] == "production"
    assert run_cycle(one.box()).applied.failed[0]["reason"].startswith(
        "it failed here before")  # not retried every cycle


def stored_report(hub, seq: int) -> dict:
    """The newest report body, at or below ``seq``, that the hub stored for the only
    device and that was queued while the box was offline."""
    from appliance.hub import store as db

    with hub.store.read() as conn:
        device_id = list_devices(hub)[0]["id"]
        for candidate in range(seq, 0, -1):
            row = db.get_report(conn, device_id, candidate)
            body = json.loads(row["body"])
            if body["kind"] == "report" and body["health"]["stale_since"] is not None:
                return body
    raise AssertionError("no report queued while offline reached the hub")


def infer(url: str, model: str = "scale") -> list[float]:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                        "data": [1.0, 2.0]}]}
    answer = httpx.post(f"{url}/v2/models/{model}/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    return list(np.asarray(answer.json()["outputs"][0]["data"], dtype=float))


def test_offline_the_box_goes_stale_keeps_serving_and_converges_when_the_hub_is_back(
        hub, hub_url, published, enrolled, ort_plugin_manager):
    one = enrolled()
    published("1")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    run_cycle(one.box())
    published("2", factor=3.0)
    assign(hub, "lab", "scale", "2", "production", actor="ops")
    gone = f"http://127.0.0.1:{closed_port()}"
    services = make_services(one.settings.data_dir, ort_plugin_manager,
                             sync={"hub_url": gone, "metadata_url": f"{gone}/repo/metadata",
                                   "stale_alert_after_s": 0, "timeout_s": 2})
    server = serve(services)
    try:
        assert infer(server.url) == [2.0, 4.0]
        box = box_of_services(services)
        try:
            result = run_cycle(box)
        finally:
            box.registry.close()
        assert result.status == "offline" and result.stale_since is not None
        assert read_state(one.settings.data_dir).stale_since == result.stale_since
        assert result.upload is not None and result.upload.unreachable
        health = httpx.get(f"{server.url}/v1/health", timeout=10).json()
        assert health["status"] == "degraded"
        assert health["dependencies"]["hub_sync"]["status"] == "degraded"
        assert any(r.startswith("hub sync: stale since") for r in health["reasons"])
        assert httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code == 200
        assert infer(server.url) == [2.0, 4.0]  # inference unaffected
        firing = services.alerts.list_alerts(state="firing")
        assert [a["name"] for a in firing] == ["HubSyncStale"]
        status = sync_status(services.settings)
        assert status["stale_since"] is not None and status["outbox"]["depth"] >= 1

        services.settings.sync.hub_url = hub_url  # the hub is back
        services.settings.sync.metadata_url = f"{hub_url}/repo/metadata"
        box = box_of_services(services)
        try:
            back = run_cycle(box)
        finally:
            box.registry.close()
        assert back.status == "ok" and back.stale_since is None
        assert read_state(one.settings.data_dir).stale_since is None
        assert back.upload is not None and back.upload.error is None
        assert sync_status(services.settings)["outbox"]["depth"] == 0  # every report in
        assert infer(server.url) == [3.0, 6.0]  # switched to version 2 in one cycle
        health = httpx.get(f"{server.url}/v1/health", timeout=10).json()
        assert health["dependencies"]["hub_sync"]["status"] == "ok"
        assert services.alerts.list_alerts(state="firing") == []
        report = stored_report(hub, back.upload.acked)
        assert report["health"]["stale_since"] is not None  # queued while offline...
        assert report["installed"]["scale"][0]["version"] == "1"
        assert report["audit_checkpoints"][0]["signature"]  # the box's signed audit head
        assert report["metrics"]["audit_head"]["seq"] >= 1
    finally:
        server.stop()
        services.close()


def test_the_cli_runs_one_cycle_with_progress_and_status(hub, published, enrolled,
                                                         monkeypatch):
    from click.testing import CliRunner

    from appliance.cli import main

    one = enrolled()
    published("1")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(one.settings.data_dir))
    monkeypatch.delenv("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD")  # the CLI's backends
    done = CliRunner().invoke(main, ["sync", "run"])
    assert done.exit_code == 0, done.output
    assert "refreshing the hub's metadata" in done.stderr
    assert done.stdout.startswith("sync ok")
    assert "promoted scale version 1: registered -> production" in done.stdout
    status = CliRunner().invoke(main, ["sync", "status"])
    assert status.exit_code == 0 and "not stale" in status.stdout
    assert "outbox: 0 report(s) waiting" in status.stdout
