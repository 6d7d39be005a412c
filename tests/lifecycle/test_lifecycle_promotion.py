"""Stages, promotion gates (approvals, freeze windows, signatures), load checks, rollback."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest
from helpers import unsigned_config
from helpers.models import identity_model, scale_model
from litestar import Litestar
from litestar.datastructures import State
from litestar.testing import TestClient
from onnx import TensorProto, helper

from appliance.api.errors import EXCEPTION_HANDLERS
from appliance.api.lifecycle import LifecycleController
from appliance.errors import Conflict, Forbidden, NotFound
from appliance.lifecycle.gates import BreakingChange, approve, signature_diff
from appliance.lifecycle.promotion import PromotionFailed, promote, rollback, stage_history
from appliance.packages.importer import import_model
from appliance.registry import Registry
from appliance.settings import load_settings
from appliance.signature import TensorSpec


def y_and_z_model(path: Path) -> Path:
    """y = x and z = x over FP32 [-1, 2]: scale_model's signature plus an output."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    outs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, [None, 2]) for n in "yz"]
    graph = helper.make_graph([helper.make_node("Identity", ["x"], [n]) for n in "yz"],
                              "yz", [x], outs)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def settings_for(tmp_path: Path, **overrides):
    overrides.setdefault("signing_policy", {})  # unsigned toy models; signing is tested apart
    return load_settings({"data_dir": tmp_path / "var", **overrides}, environ={})


@pytest.fixture
def settings(tmp_path):
    return settings_for(tmp_path)


def add(registry, catalog, tmp_path, build=scale_model, *args, by="pusher", name="m"):
    path = build(tmp_path / f"model{len(registry.versions())}.onnx", *args)
    return import_model(registry, catalog, path, name=name, created_by=by)


def to_production(registry, settings, version, **kw):
    return promote(registry, settings, "m", version, "production", actor="ops", **kw)


def tag_high_impact(registry, version):
    registry.db.execute("UPDATE versions SET manifest = ? WHERE model = 'm' AND version = ?",
                        [json.dumps({"tags": {"impact": "high"}}), version])


def test_legal_path_to_production_is_recorded_with_actor_and_time(registry, catalog,
                                                                  settings, tmp_path):
    add(registry, catalog, tmp_path, scale_model, 2.0)
    for stage in ("shadow", "canary", "production"):
        summary = promote(registry, settings, "m", "1", stage, actor="alice", reason=stage)
        assert summary["to"] == stage and summary["demoted"] is None
    assert registry.version("m", "1").stage == "production"
    history = stage_history(registry, "m", "1")
    assert [(h["from"], h["to"]) for h in history] == [
        (None, "registered"), ("registered", "shadow"), ("shadow", "canary"),
        ("canary", "production")]
    assert all(h["actor"] == "alice" and datetime.fromisoformat(h["at"])
               for h in history[1:])
    actions = [r[0] for r in registry.db.execute(
        "SELECT action FROM events WHERE model = 'm' ORDER BY id").fetchall()]
    assert actions == ["add", "promote", "promote", "promote"]


def test_illegal_transition_lists_legal_ones_and_unknown_version_is_404(registry, catalog,
                                                                        settings, tmp_path):
    add(registry, catalog, tmp_path, scale_model, 2.0)
    with pytest.raises(Conflict, match="legal from registered: shadow, canary, production"):
        promote(registry, settings, "m", "1", "deprecated", actor="ops")
    with pytest.raises(NotFound):
        promote(registry, settings, "m", "9", "shadow", actor="ops")
    assert registry.version("m", "1").stage == "registered"


def test_production_promotion_demotes_the_previous_production(registry, catalog, settings,
                                                              tmp_path):
    add(registry, catalog, tmp_path, scale_model, 2.0)
    add(registry, catalog, tmp_path, scale_model, 3.0)
    to_production(registry, settings, "1")
    summary = to_production(registry, settings, "2", reason="better")
    assert summary["demoted"] == "1"
    assert registry.version("m", "1").stage == "deprecated"
    assert stage_history(registry, "m", "1")[-1]["reason"] == "superseded by version 2: better"


def test_high_impact_needs_distinct_approvers_and_not_the_pusher(registry, catalog, settings,
                                                                 tmp_path):
    add(registry, catalog, tmp_path, scale_model, 2.0, by="pat")
    tag_high_impact(registry, "1")
    with pytest.raises(Forbidden, match="pat pushed m version 1"):
        approve(registry, "m", "1", "pat", "mine")
    with pytest.raises(NotFound):
        approve(registry, "m", "7", "bob", "?")
    approve(registry, "m", "1", "bob", "reviewed")
    again = approve(registry, "m", "1", "bob", "twice")  # idempotent per approver
    assert [a["approver"] for a in again["approvals"]] == ["bob"]
    assert again["reason"] == "reviewed" and again["at"]
    with pytest.raises(Conflict, match=r"needs 2 approvals .* has 1 \(bob\)"):
        to_production(registry, settings, "1")
    approve(registry, "m", "1", "carol", "load tested")
    assert to_production(registry, settings, "1")["to"] == "production"


def test_freeze_window_refuses_and_emergency_override_is_recorded(registry, catalog, tmp_path):
    now = datetime.now(UTC)
    window = {"start": (now - timedelta(hours=1)).isoformat(),
              "end": (now + timedelta(hours=1)).isoformat(), "reason": "year-end close"}
    settings = settings_for(tmp_path, freeze_windows=[window])
    add(registry, catalog, tmp_path, scale_model, 2.0)
    with pytest.raises(Conflict, match="frozen from .* \\(year-end close\\)"):
        to_production(registry, settings, "1")
    promote(registry, settings, "m", "1", "canary", actor="ops")  # other stages are not frozen
    after = now + timedelta(hours=2)
    assert to_production(registry, settings, "1", now=after)["to"] == "production"
    add(registry, catalog, tmp_path, scale_model, 3.0)
    summary = to_production(registry, settings, "2", emergency_reason="fraud spike")
    assert summary["emergency_reason"] == "fraud spike"
    assert "fraud spike" in stage_history(registry, "m", "2")[-1]["reason"]
    detail = json.loads(registry.db.execute(
        "SELECT detail FROM events WHERE action = 'promote' AND version = '2'").fetchone()[0])
    assert detail["emergency_reason"] == "fraud spike"
    assert detail["freeze_window"]["reason"] == "year-end close"


def test_signature_diff_rules(registry, catalog, tmp_path):
    old = add(registry, catalog, tmp_path, scale_model, 2.0)

    def diff(inputs, outputs=None, readers=()):
        new = dataclasses.replace(old, version="x", inputs=inputs,
                                  outputs=old.outputs if outputs is None else outputs)
        return signature_diff(old, new, [{"name": "c", "reads": list(readers)}])

    x = TensorSpec("x", "FP32", (-1, 2))
    assert not diff([TensorSpec("x", "FP32", (-1, -1))]).is_breaking  # fixed -> any is fine
    assert diff([TensorSpec("x", "FP32", (4, 2))]).breaking  # any -> fixed breaks
    assert diff([TensorSpec("x", "FP16", (-1, 2))]).breaking
    assert diff([x, TensorSpec("w", "FP32", (-1,))]).breaking == ["new required input 'w'"]
    assert not diff([x], outputs=[]).is_breaking  # nobody reads y
    assert diff([x], outputs=[], readers=["y"]).breaking == ["output 'y' removed (read by c)"]
    assert diff([x], [TensorSpec("y", "INT64", (-1, 2))], readers=["y"]).breaking


def test_breaking_change_needs_flag_and_approvals(registry, catalog, settings, tmp_path):
    add(registry, catalog, tmp_path, scale_model, 2.0)
    add(registry, catalog, tmp_path, identity_model)  # x: FP32 [-1, 3] instead of [-1, 2]
    to_production(registry, settings, "1")
    with pytest.raises(BreakingChange, match="input 'x' shape") as refused:
        to_production(registry, settings, "2")
    assert refused.value.status == 409 and refused.value.diff.breaking
    with pytest.raises(BreakingChange, match="needs 2 approvals, it has 0"):
        to_production(registry, settings, "2", breaking=True)
    approve(registry, "m", "2", "bob", "clients updated")
    approve(registry, "m", "2", "carol", "clients updated")
    summary = to_production(registry, settings, "2", breaking=True)
    assert summary["signature"]["breaking"] and summary["demoted"] == "1"


def test_loader_failure_marks_failed_and_production_keeps_serving(registry, catalog, settings,
                                                                  tmp_path):
    add(registry, catalog, tmp_path, scale_model, 2.0)
    add(registry, catalog, tmp_path, scale_model, 3.0)
    to_production(registry, settings, "1")
    loaded = []
    promote(registry, settings, "m", "2", "canary", actor="ops", loader=loaded.append)
    assert [r.version for r in loaded] == ["2"]

    def broken(record):
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(PromotionFailed, match="version 1 keeps serving") as failed:
        to_production(registry, settings, "2", loader=broken)
    assert failed.value.status == 409
    v2 = registry.version("m", "2")
    assert v2.stage == "failed" and "CUDA out of memory" in v2.failure_reason
    assert registry.version("m", "1").stage == "production"
    assert stage_history(registry, "m", "2")[-1]["to"] == "failed"


def test_rollback_returns_to_the_previous_production(registry, catalog, settings, tmp_path):
    for factor in (2.0, 3.0, 4.0):
        add(registry, catalog, tmp_path, scale_model, factor)
        to_production(registry, settings, str(len(registry.versions())))
    summary = rollback(registry, settings, "m", actor="oncall", reason="bad answers")
    assert (summary["version"], summary["rolled_back_from"]) == ("2", "3")
    stages = {v.version: v.stage for v in registry.versions("m")}
    assert stages == {"1": "deprecated", "2": "production", "3": "deprecated"}
    last = stage_history(registry, "m", "2")[-1]
    assert (last["from"], last["to"], last["actor"]) == ("deprecated", "production", "oncall")
    with pytest.raises(Conflict, match="already in production"):
        rollback(registry, settings, "m", to_version="2", actor="oncall", reason="again")


def test_rollback_refused_when_target_lacks_a_consumed_output(registry, catalog, settings,
                                                              tmp_path):
    add(registry, catalog, tmp_path, scale_model, 2.0)  # outputs: y
    add(registry, catalog, tmp_path, y_and_z_model)  # outputs: y, z (compatible)
    to_production(registry, settings, "1")
    to_production(registry, settings, "2")
    registry.db.execute("INSERT INTO consumers (name, model, reads, contact, created_at) "
                        "VALUES ('billing', 'm', ?, 'b@example.com', 'now')",
                        [json.dumps(["y", "z"])])
    with pytest.raises(Conflict, match="billing reads z"):
        rollback(registry, settings, "m", actor="oncall", reason="bad")
    assert registry.version("m", "2").stage == "production"
    summary = rollback(registry, settings, "m", actor="oncall", reason="bad",
                       force_reason="billing agreed to degrade")
    assert summary["forced"]["missing"] == {"billing": ["z"]}
    assert "forced: billing agreed" in stage_history(registry, "m", "1")[-1]["reason"]


# -- the real CLI --------------------------------------------------------------------------
def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir),
           "APPLIANCE_CONFIG": str(unsigned_config(Path(data_dir).parent))}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
    code = "import appliance.cli.lifecycle; from appliance.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_cli_promote_approve_rollback_end_to_end(tmp_path):
    data = tmp_path / "var"
    for factor in (2.0, 3.0):
        path = scale_model(tmp_path / f"s{factor}.onnx", factor)
        assert cli("models", "add", str(path), "--name", "m", "--by", "pat",
                   data_dir=data).returncode == 0
    r = cli("models", "promote", "m", "1", "--to", "production", "--by", "alice", "--json",
            data_dir=data)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["to"] == "production"
    r = cli("models", "promote", "m", "1", "--to", "shadow", data_dir=data)
    assert r.returncode == 1 and "legal from production: deprecated" in r.stderr
    assert cli("models", "promote", "m", "1", "--to", "bogus", data_dir=data).returncode == 2
    r = cli("models", "approve", "m", "2", "--by", "pat", "--reason", "x", "--json",
            data_dir=data)
    assert r.returncode == 1 and "cannot approve" in json.loads(r.stdout)["error"]
    r = cli("models", "promote", "m", "2", "--to", "production", "--by", "bob", data_dir=data)
    assert r.returncode == 0 and "version 1 deprecated" in r.stdout
    r = cli("models", "rollback", "m", "--by", "oncall", "--json", data_dir=data)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == "1"


def test_cli_load_failure_marks_failed_and_keeps_production(tmp_path):
    data = tmp_path / "var"
    for factor in (2.0, 3.0):
        cli("models", "add", str(scale_model(tmp_path / f"s{factor}.onnx", factor)),
            "--name", "m", data_dir=data)
    assert cli("models", "promote", "m", "1", "--to", "production",
               data_dir=data).returncode == 0
    reg = Registry(data)
    try:
        artifact = reg.artifact_path(reg.version("m", "2"))
        artifact.chmod(0o644)
        artifact.write_bytes(b"corrupted on disk")
        r = cli("models", "promote", "m", "2", "--to", "production", data_dir=data)
        assert r.returncode == 1 and "load or warm-up failed" in r.stderr
        assert reg.version("m", "2").stage == "failed"
        assert reg.version("m", "1").stage == "production"
    finally:
        reg.close()


# -- the API (repository stubbed: preload and refresh are the server's) --------------------
def test_api_promote_approve_rollback(registry, catalog, settings, tmp_path):
    add(registry, catalog, tmp_path, scale_model, 2.0, by="pat")
    add(registry, catalog, tmp_path, scale_model, 3.0, by="pat")
    calls: list[str] = []
    repo = SimpleNamespace(preload=lambda r: calls.append(f"preload {r.version}"),
                           refresh=lambda: calls.append("refresh"))
    import dataclasses

    import appliance_onnxruntime
    from helpers import make_services

    from appliance.plugins import get_plugin_manager

    real = make_services(registry.data_dir, get_plugin_manager(
        autoload=False, extra=(appliance_onnxruntime,)))
    # the real services with this test's settings, and a repository that records calls
    services = dataclasses.replace(real, settings=settings, registry=registry,
                                   repository=repo)  # type: ignore[arg-type]
    app = Litestar(route_handlers=[LifecycleController], exception_handlers=EXCEPTION_HANDLERS,
                   state=State({"services": services}))
    with TestClient(app) as client:
        assert client.get("/v1/models").json()[0]["versions"][0]["stage"] == "registered"
        r = client.post("/v1/models/m/versions/1/promote", json={"to": "production"})
        assert r.status_code == 200 and r.json()["to"] == "production"
        assert calls == ["preload 1", "refresh"]
        r = client.post("/v1/models/m/versions/1/promote", json={"to": "canary"})
        assert r.status_code == 409 and "legal from production" in r.json()["error"]
        r = client.post("/v1/models/m/versions/2/approve",
                        json={"approver": "pat", "reason": "mine"})
        assert r.status_code == 403
        r = client.post("/v1/models/m/versions/2/approve",
                        json={"approver": "bob", "reason": "ok"})
        assert r.status_code == 200
        client.post("/v1/models/m/versions/2/promote", json={"to": "production",
                                                              "actor": "alice"})
        r = client.post("/v1/models/m/rollback", json={"reason": "bad"})
        assert r.status_code == 200 and r.json()["version"] == "1"
        shown = client.get("/v1/models/m/versions/2").json()
        assert shown["stage"] == "deprecated" and shown["approvals"][0]["approver"] == "bob"
        assert [h["actor"] for h in shown["stage_history"]] == ["pat", "alice", "api"]
        assert client.get("/v1/models/nope").status_code == 404
    real.close()



def test_cli_promote_at_schedules_instead_of_promoting(tmp_path):
    data = tmp_path / "var"
    cli("models", "add", str(scale_model(tmp_path / "s.onnx", 2.0)), "--name", "m",
        data_dir=data)
    when = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
    r = cli("models", "promote", "m", "1", "--to", "production", "--at", when.isoformat(),
            "--by", "alice", "--json", data_dir=data)
    assert r.returncode == 0, r.stderr
    entry = json.loads(r.stdout)
    assert datetime.fromisoformat(entry["at"]) == when and entry["actor"] == "alice"
    r = cli("models", "promote", "m", "1", "--to", "production", "--at", when.isoformat(),
            "--breaking", data_dir=data)
    assert r.returncode == 2 and "--breaking cannot be scheduled" in r.stderr
    reg = Registry(data)
    try:
        assert reg.version("m", "1").stage == "registered"
    finally:
        reg.close()
