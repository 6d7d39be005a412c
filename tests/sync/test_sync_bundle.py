"""Air-gapped sites: a bundle exported by the hub, verified by the same TUF client over
the directory and applied like a cycle, on a box with no route to the hub; later online
syncs continue from it with no duplicate install."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from helpers.packages import signed_package
from sync_helpers import closed_port

from appliance.cli import main
from appliance.errors import BadRequest
from appliance.hub.fleet import export_bundle
from appliance.hub.publish import publish
from appliance.hub.rollout import assign
from appliance.sync.bundle import import_bundle
from appliance.sync.cycle import run_cycle
from appliance.sync.enroll import enroll
from appliance.sync.status import sync_status


@pytest.fixture
def site(hub, hub_url, box, publisher, enrolment_token, tmp_path):
    """(an enrolled box with no route to the hub, the hub's bundle for its group)."""
    gone = f"http://127.0.0.1:{closed_port()}"
    one = box(hub_url=gone, metadata_url=f"{gone}/repo/metadata")
    enroll(one.settings, hub_url, enrolment_token(), hardware={"profile": "test"})
    (tmp_path / "ci").mkdir()
    publish(hub, signed_package(tmp_path / "ci", publisher, version="1"), actor="ci")
    assign(hub, "lab", "scale", "1", "production", actor="ops")
    export_bundle(hub, "lab", tmp_path / "usb", actor="ops")
    return one, tmp_path / "usb"


def test_a_bundle_installs_and_promotes_without_the_network(site):
    one, usb = site
    result = import_bundle(one.box(), usb)
    assert result.status == "ok", result.error
    assert result.applied.installed == [{"model": "scale", "version": "1"}]
    assert one.stage_of("scale", "1") == "production"
    assert result.upload is None  # nothing sent: the report waits in the outbox
    status = sync_status(one.settings)
    assert status["outbox"]["depth"] == 1 and status["stale_since"] is None


def test_online_syncs_continue_from_a_bundle_without_installing_again(site, hub_url):
    one, usb = site
    import_bundle(one.box(), usb)
    one.settings.sync.hub_url = hub_url  # the site gets a network route after all
    one.settings.sync.metadata_url = f"{hub_url}/repo/metadata"
    result = run_cycle(one.box())
    assert result.status == "ok", result.error
    assert result.applied.downloaded == 0 and result.applied.installed == []
    assert [v.version for v in one.registry.versions("scale")] == ["1"]
    assert sync_status(one.settings)["outbox"]["depth"] == 0  # both reports arrived


def test_a_bundle_with_a_tampered_file_installs_nothing(site):
    one, usb = site
    package = next(p for p in (usb / "targets").rglob("*.tar.enc"))
    data = bytearray(package.read_bytes())
    data[100] ^= 1
    package.write_bytes(bytes(data))
    result = import_bundle(one.box(), usb)
    assert result.status == "refused" and result.refusal["kind"] == "bad-hash"
    assert one.registry.models() == []


def test_a_bundle_with_a_missing_file_installs_nothing(site):
    one, usb = site
    next(p for p in (usb / "targets").rglob("*.tar.enc")).unlink()
    result = import_bundle(one.box(), usb)
    assert result.status == "refused"
    assert one.registry.models() == []


def test_a_directory_that_is_no_bundle_is_refused(site, tmp_path):
    one, _ = site
    with pytest.raises(BadRequest, match="not a sync bundle"):
        import_bundle(one.box(), tmp_path / "empty")


def test_the_cli_imports_a_bundle_with_progress(site, monkeypatch):
    one, usb = site
    monkeypatch.setenv("APPLIANCE_DATA_DIR", str(one.settings.data_dir))
    monkeypatch.delenv("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD")  # the CLI's backends
    done = CliRunner().invoke(main, ["sync", "import-bundle", str(usb)])
    assert done.exit_code == 0, done.output
    assert "downloading packages/scale/1/" in done.stderr  # progress lines
    assert "installed scale version 1" in done.stdout
    assert "promoted scale version 1: registered -> production" in done.stdout
    again = CliRunner().invoke(main, ["sync", "import-bundle", str(usb), "--json"])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["unchanged"][0]["version"] == "1"
    assert again.stderr == ""  # --json: no progress lines
