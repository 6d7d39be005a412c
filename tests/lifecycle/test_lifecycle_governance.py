"""Consumers, lineage, legal holds, deletion, retention and deprecation, on a real registry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
from helpers.models import identity_model, scale_model, two_output_model

from appliance.api.errors import EXCEPTION_HANDLERS
from appliance.api.governance import GOVERNANCE_ROUTES
from appliance.errors import BadRequest, Conflict, NotFound
from appliance.lifecycle.consumers import add_consumer, list_consumers, remove_consumer
from appliance.lifecycle.deletion import delete_version
from appliance.lifecycle.deprecation import deprecation_headers
from appliance.lifecycle.holds import active_holds, place_hold, release_hold
from appliance.lifecycle.lineage import format_lineage, lineage
from appliance.lifecycle.retention import apply_retention, set_policy
from appliance.packages.importer import import_model
from appliance.registry import Registry
from appliance.registry.db import transaction
from appliance.runtime.catalog import BackendCatalog
from appliance.testing.server import ServerThread


@pytest.fixture
def add(registry, ort_plugin_manager, tmp_path):
    """add(name, factor=None | path) -> version: import a real ONNX model."""
    catalog = BackendCatalog(ort_plugin_manager)
    counter = iter(range(1000))

    def _add(name: str, factor: float | None = None, path: Path | None = None) -> str:
        if path is None:
            path = scale_model(tmp_path / f"m{next(counter)}.onnx", factor or 1.0 + next(counter))
        return import_model(registry, catalog, path, name=name, created_by="alice").version

    return _add


def set_stage(registry: Registry, model: str, version: str, stage: str, *,
              at: datetime | None = None, actor: str = "ops") -> None:
    when = (at or datetime.now(UTC)).isoformat()
    with transaction(registry.db) as db:
        old = db.execute("SELECT stage FROM versions WHERE model=? AND version=?",
                         [model, version]).fetchone()[0]
        db.execute("UPDATE versions SET stage=?, stage_changed_at=? WHERE model=? AND version=?",
                   [stage, when, model, version])
        db.execute("INSERT INTO stage_history (model, version, from_stage, to_stage, at, actor, "
                   "reason) VALUES (?, ?, ?, ?, ?, ?, 'test')", [model, version, old, stage,
                                                                 when, actor])


def set_manifest(registry: Registry, model: str, version: str, manifest: dict) -> None:
    registry.db.execute("UPDATE versions SET manifest=? WHERE model=? AND version=?",
                        [json.dumps(manifest), model, version])


def events(registry: Registry, *actions: str) -> list[tuple]:
    rows = registry.db.execute("SELECT action, actor, model, version, detail FROM events "
                               "ORDER BY id").fetchall()
    return [r for r in rows if not actions or r[0] in actions]


def test_consumer_add_list_and_unknown_output_refused(registry, add, tmp_path):
    v = add("two", path=two_output_model(tmp_path / "two.onnx"))
    set_stage(registry, "two", v, "production")
    c = add_consumer(registry, "billing", "two", ["sum"], "billing@example.com")
    assert c.reads == ["sum"] and c.webhook is None
    with pytest.raises(BadRequest, match="ratio, quot.*outputs are: sum, prod"):
        add_consumer(registry, "risk", "two", ["sum", "ratio", "quot"], "risk@example.com")
    with pytest.raises(NotFound, match="ghost"):
        add_consumer(registry, "risk", "ghost", ["sum"], "risk@example.com")
    with pytest.raises(Conflict, match="already registered"):
        add_consumer(registry, "billing", "two", ["prod"], "x@example.com")
    with pytest.raises(BadRequest, match="http"):
        add_consumer(registry, "risk", "two", ["sum"], "r@example.com", webhook="ftp://x")
    add_consumer(registry, "risk", "two", ["prod", "sum"], "risk@example.com")
    assert [x.name for x in list_consumers(registry, "two")] == ["billing", "risk"]
    assert list_consumers(registry, "other") == []
    remove_consumer(registry, "risk", "two", actor="ops")
    assert [x.name for x in list_consumers(registry)] == ["billing"]
    assert [e[0] for e in events(registry, "consumer-add", "consumer-remove")] == [
        "consumer-add", "consumer-add", "consumer-remove"]


def test_lineage_expands_parents_and_shows_stage_history(registry, add):
    add("teacher")
    add("student")
    add("student")
    set_manifest(registry, "teacher", "1", {"lineage": {"training_job": "train-7",
                                                        "dataset_digest": "sha256:aa"}})
    set_manifest(registry, "student", "1", {"lineage": {
        "training_job": "distill-3", "code_commit": "abc123",
        "training_url": "https://ci.example.com/distill-3",
        "parents": [{"model": "teacher", "version": "1", "relation": "teacher"},
                    {"model": "bert-base", "version": "7", "relation": "pretrained"}]}})
    set_manifest(registry, "student", "2", {"lineage": {"parents": [
        {"model": "student", "version": "1", "relation": "fp32-source"}]}})
    set_stage(registry, "student", "1", "production", actor="bob")
    set_stage(registry, "student", "1", "deprecated", actor="carol")
    set_stage(registry, "student", "2", "production", actor="carol")

    tree = lineage(registry, "student", "2")
    assert tree["stage"] == "production" and [h["to_stage"] for h in tree["history"]] == [
        "registered", "production"]
    (source,) = tree["parents"]
    assert (source["model"], source["version"], source["relation"]) == ("student", "1",
                                                                        "fp32-source")
    assert source["training"]["training_job"] == "distill-3"
    assert [(h["to_stage"], h["actor"]) for h in source["history"]] == [
        ("registered", "alice"), ("production", "bob"), ("deprecated", "carol")]
    assert source["served"][1]["stage"] == "production"
    assert source["served"][1]["until"] == source["history"][2]["at"]
    teacher, external = source["parents"]
    assert teacher["external"] is False and teacher["training"]["training_job"] == "train-7"
    assert external == {"model": "bert-base", "version": "7", "relation": "pretrained",
                        "external": True}
    text = format_lineage(tree)
    assert "fp32-source: student version 1" in text and "external" in text
    assert "by bob" in text and "job distill-3" in text

    # a cycle in recorded lineage does not recurse forever
    set_manifest(registry, "teacher", "1", {"lineage": {"parents": [
        {"model": "student", "version": "2", "relation": "oops"}]}})
    cyc = lineage(registry, "student", "2")["parents"][0]["parents"][0]["parents"][0]
    assert cyc["cycle"] is True
    with pytest.raises(NotFound):
        lineage(registry, "student", "9")


def test_hold_blocks_manual_and_retention_deletion_until_released(registry, add):
    add("bc")
    old = datetime.now(UTC) - timedelta(days=90)
    set_stage(registry, "bc", "1", "archived", at=old)
    hold = place_hold(registry, "bc", "1", "legal", "case 42")
    assert place_hold(registry, "bc", "1", "legal", "case 42").id == hold.id  # idempotent
    with pytest.raises(Conflict) as refused:
        delete_version(registry, "bc", "1", actor="ops", reason="cleanup")
    assert refused.value.status == 409
    assert "held by legal" in refused.value.message and "case 42" in refused.value.message
    assert hold.at in refused.value.message

    set_policy(registry, "model", "bc", delete_archived_after_days=30)
    actions = apply_retention(registry)
    assert [a["action"] for a in actions] == ["blocked"] and "case 42" in actions[0]["reason"]
    assert registry.version("bc", "1").stage == "archived"

    released = release_hold(registry, "bc", "1", "legal-lead")
    assert released[0].released_by == "legal-lead" and active_holds(registry) == []
    with pytest.raises(NotFound, match="no active hold"):
        release_hold(registry, "bc", "1", "legal-lead")
    assert [a["action"] for a in apply_retention(registry)] == ["delete"]
    with pytest.raises(NotFound):
        registry.version("bc", "1")
    assert [(e[0], e[1]) for e in events(registry, "hold", "release", "delete")] == [
        ("hold", "legal"), ("release", "legal-lead"), ("delete", "retention")]
    last = registry.db.execute("SELECT from_stage, to_stage, actor FROM stage_history "
                               "ORDER BY id DESC LIMIT 1").fetchone()
    assert last == ("archived", "deleted", "retention")


def test_artifacts_removed_only_when_no_version_references_them(registry, add, tmp_path):
    path = identity_model(tmp_path / "id.onnx")
    add("a", path=path)
    add("a", path=path)
    add("b", path=path)
    digest = registry.version("a", "1").digest
    stored = registry.store.path_for(digest)
    assert registry.version("b", "1").digest == digest
    generation = registry.db.execute("SELECT generation FROM registry_state").fetchone()[0]
    set_stage(registry, "a", "1", "archived")
    first = delete_version(registry, "a", "1", actor="ops", reason="old")
    assert first.artifacts_removed == [] and stored.is_dir()
    assert registry.db.execute("SELECT generation FROM registry_state").fetchone()[0] > generation
    assert delete_version(registry, "a", "2", actor="ops", reason="old").artifacts_removed == []
    last = delete_version(registry, "b", "1", actor="ops", reason="old")  # registered: allowed
    assert last.artifacts_removed == [digest] and not stored.exists()
    assert len(events(registry, "delete")) == 3


@pytest.mark.parametrize("stage", ["production", "canary", "shadow", "deprecated"])
def test_deleting_a_serving_or_deprecated_version_is_refused(registry, add, stage):
    add("bc")
    set_stage(registry, "bc", "1", stage)
    with pytest.raises(Conflict, match=f"is {stage}: archive it first"):
        delete_version(registry, "bc", "1", actor="ops", reason="cleanup")
    with pytest.raises(BadRequest, match="reason"):
        delete_version(registry, "bc", "1", actor="ops", reason=" ")
    assert registry.version("bc", "1").stage == stage and events(registry, "delete") == []


def test_retention_keeps_last_n_deprecated_and_deletes_old_archived(registry, add):
    for _ in range(5):
        add("pii-model")
    add("other")
    now = datetime.now(UTC)
    set_stage(registry, "pii-model", "1", "archived", at=now - timedelta(days=40))
    for v in ("2", "3", "4"):
        set_stage(registry, "pii-model", v, "deprecated")
    set_stage(registry, "pii-model", "5", "production")
    set_manifest(registry, "pii-model", "5", {"tags": {"sensitivity": "pii"}})
    set_stage(registry, "other", "1", "deprecated")
    set_policy(registry, "tag", "sensitivity=pii", keep_deprecated=1)
    policy = set_policy(registry, "tag", "sensitivity=pii", delete_archived_after_days=30)
    assert (policy.keep_deprecated, policy.delete_archived_after_days) == (1, 30)

    actions = apply_retention(registry, now=now)
    assert [(a["action"], a["version"]) for a in actions] == [
        ("archive", "2"), ("archive", "3"), ("delete", "1")]
    stages = {v.version: v.stage for v in registry.versions("pii-model")}
    assert stages == {"2": "archived", "3": "archived", "4": "deprecated", "5": "production"}
    assert registry.version("other", "1").stage == "deprecated"
    moves = registry.db.execute("SELECT version, actor FROM stage_history WHERE "
                                "from_stage='deprecated' AND to_stage='archived'").fetchall()
    assert moves == [("2", "retention"), ("3", "retention")]
    assert [(e[1], e[3]) for e in events(registry, "archive")] == [("retention", "2"),
                                                                    ("retention", "3")]
    assert apply_retention(registry, now=now) == []
    later = apply_retention(registry, now=now + timedelta(days=31))
    assert [(a["action"], a["version"]) for a in later] == [("delete", "2"), ("delete", "3")]

    with pytest.raises(BadRequest, match="key=value"):
        set_policy(registry, "tag", "pii", keep_deprecated=1)
    with pytest.raises(BadRequest, match="0 or more"):
        set_policy(registry, "model", "x", keep_deprecated=-1)


def test_deprecation_headers_format():
    record = SimpleNamespace(model="bc", version="1", stage="production",
                             deprecation_date="2026-12-01T00:00:00+00:00",
                             sunset_date="2027-03-01T12:00:00+00:00", successor="2")
    assert deprecation_headers(record) == {
        "Deprecation": f"@{int(datetime(2026, 12, 1, tzinfo=UTC).timestamp())}",
        "Sunset": "Mon, 01 Mar 2027 12:00:00 GMT",
        "Link": '</v2/models/bc/versions/2>; rel="successor-version"'}
    assert deprecation_headers(record, "http://box:8000/")["Link"].startswith(
        "<http://box:8000/v2/models/bc/versions/2>")
    plain = SimpleNamespace(model="bc", version="2", stage="production", deprecation_date=None,
                            sunset_date=None, successor=None)
    assert deprecation_headers(plain) == {}


def test_governance_api_routes(registry, add):
    from litestar import Litestar
    from litestar.datastructures import State

    add("bc")
    try:  # GET on /v1/models/{name}/versions/{version} is the lifecycle controller's
        from appliance.api.lifecycle import LifecycleController
        before: list = [LifecycleController]
    except ImportError:  # pragma: no cover - governance routes also stand alone
        before = []
    import appliance_onnxruntime
    from helpers import make_services

    from appliance.plugins import get_plugin_manager

    services = make_services(registry.data_dir, get_plugin_manager(
        autoload=False, extra=(appliance_onnxruntime,)))
    app = Litestar(route_handlers=[*before, *GOVERNANCE_ROUTES],
                   exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
                   state=State({"services": services}))
    with ServerThread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        r = http.post("/v1/consumers", json={"name": "app", "model": "bc", "reads": ["y"],
                                             "contact": "a@example.com"})
        assert r.status_code == 200 and r.json()["reads"] == ["y"]
        assert [c["name"] for c in http.get("/v1/consumers?model=bc").json()] == ["app"]
        assert http.get("/v1/models/bc/versions/1/lineage").json()["history"][0]["actor"] == (
            "alice")
        r = http.post("/v1/models/bc/versions/1/hold", json={"holder": "legal", "reason": "c9"})
        assert r.status_code == 200 and r.json()["active"] is True
        r = http.request("DELETE", "/v1/models/bc/versions/1",
                         json={"actor": "ops", "reason": "cleanup"})
        assert r.status_code == 409 and "held by legal" in r.json()["error"]
        assert http.post("/v1/models/bc/versions/1/release", json={"by": "legal"}).status_code \
            == 200
        r = http.post("/v1/models/bc/versions/1/deprecate",
                      json={"deprecation_date": "2026-12-01", "actor": "ops"})
        assert r.status_code == 200 and r.json()["notices"][0]["consumer"] == "app"
        r = http.delete("/v1/models/bc/versions/1", params={"actor": "ops", "reason": "x"})
        assert r.status_code == 200 and r.json()["stage"] == "registered"
        assert http.get("/v1/models/bc/versions/1/lineage").status_code == 404
    services.close()


CLI = "import appliance.cli.governance; from appliance.cli import main; main()"


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-c", CLI, *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_cli_consumers_add_and_list(registry, add):
    add("bc")
    data_dir = registry.data_dir
    r = cli("consumers", "add", "app", "--model", "bc", "--reads", "y", "--contact",
            "a@example.com", "--json", data_dir=data_dir)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["reads"] == ["y"]
    r = cli("consumers", "add", "app2", "--model", "ghost", "--reads", "y", "--contact", "c",
            data_dir=data_dir)
    assert r.returncode == 1 and "ghost" in r.stderr
    listed = cli("consumers", "list", "--model", "bc", data_dir=data_dir)
    assert listed.returncode == 0 and "app" in listed.stdout and "a@example.com" in listed.stdout


def test_cli_delete_of_held_version_exits_1_naming_the_hold(registry, add):
    add("bc")
    data_dir = registry.data_dir
    r = cli("models", "hold", "bc", "1", "--by", "legal", "--reason", "case 42",
            data_dir=data_dir)
    assert r.returncode == 0, r.stderr
    r = cli("models", "delete", "bc", "1", "--by", "ops", "--reason", "cleanup",
            data_dir=data_dir)
    assert r.returncode == 1 and "held by legal" in r.stderr and "case 42" in r.stderr
    assert cli("models", "release", "bc", "1", "--by", "legal", data_dir=data_dir).returncode == 0
    r = cli("models", "delete", "bc", "1", "--by", "ops", "--reason", "cleanup", "--json",
            data_dir=data_dir)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["artifacts_removed"]
    r = cli("retention", "set", "--tag", "team=x", "--keep-deprecated", "2", data_dir=data_dir)
    assert r.returncode == 0 and "keep 2 deprecated" in r.stdout
    r = cli("retention", "apply", "--json", data_dir=data_dir)
    assert r.returncode == 0 and json.loads(r.stdout) == []



def test_one_iso_time_parser_keeps_offsets_and_reads_naive_times_as_utc():
    from datetime import UTC, date, datetime, timedelta

    from appliance.registry.db import parse_time

    assert parse_time("2026-03-01T02:00:00") == datetime(2026, 3, 1, 2, tzinfo=UTC)
    assert parse_time(" 2026-03-01 ") == datetime(2026, 3, 1, tzinfo=UTC)
    assert parse_time(date(2026, 3, 1)) == datetime(2026, 3, 1, tzinfo=UTC)
    plus_one = parse_time("2026-03-01T03:00+01:00")
    assert plus_one.utcoffset() == timedelta(hours=1)
    assert plus_one == datetime(2026, 3, 1, 2, tzinfo=UTC)
    assert parse_time(datetime(2026, 3, 1)) == datetime(2026, 3, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="isoformat"):
        parse_time("next tuesday")
