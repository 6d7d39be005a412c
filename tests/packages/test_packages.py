"""Model packages: reproducible builds, atomic pushes, refusals, and SIGKILL crash safety.

Packages are built in tmp_path from real ONNX files; the CLI runs as a real subprocess.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from helpers import ROOT
from helpers.models import identity_model, scale_manifest, scale_model
from onnx import TensorProto, helper, numpy_helper

from appliance.demo import BREAST_CANCER
from appliance.errors import BadRequest, Conflict, NotFound
from appliance.packages import CRASH_ENV, CRASH_STEPS, build_package, load_manifest, push_package
from appliance.packages.manifest import toml_text
from appliance.registry import ArtifactStore, Registry

# imports the package commands explicitly, so this works whether or not the CLI's
# _register_commands() imports appliance.cli.package yet
CLI = "import appliance.cli.package; from appliance.cli import main; main()"
DOCS = ROOT / "docs" / "packages.md"


def cli(*args: str, data_dir: Path, env: dict[str, str] | None = None,
        timeout: float = 60) -> subprocess.CompletedProcess:
    full = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir), **(env or {})}
    full.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)  # the CLI uses the entry points
    return subprocess.run([sys.executable, "-c", CLI, *args], env=full, capture_output=True,
                          text=True, timeout=timeout)


def manifest_dict(name: str = "scale", version: str = "1", **extra: Any) -> dict[str, Any]:
    return scale_manifest(**{
        "name": name, "version": version,
        "warmup": {"generate": True},
        "golden": [{"atol": 1e-6,
                    "inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2],
                                "data": [1.0, 2.0]}],
                    "outputs": [{"name": "y", "datatype": "FP32", "shape": [1, 2],
                                 "data": [2.0, 4.0]}]}],
        "lineage": {"training_job": "job-17", "code_commit": "3f2a9c1", "parents": []},
        **extra})


def make_package(root: Path, manifest: dict[str, Any] | None = None, *,
                 factor: float = 2.0) -> Path:
    """A package directory: two real ONNX variants and a model.toml without hashes."""
    (root / "fp32").mkdir(parents=True)
    (root / "int8").mkdir()
    scale_model(root / "fp32" / "model.onnx", factor)
    scale_model(root / "int8" / "model.int8.onnx", factor)
    (root / "model.toml").write_text(toml_text(manifest or manifest_dict()))
    return root


def with_hashes(root: Path) -> dict[str, Any]:
    """The package's manifest with sha256/size filled in (as build writes it)."""
    data = toml_text(manifest_dict())
    m = load_manifest(data.encode(), require_hashes=False).to_dict()
    for variant in m["variants"]:
        for f in variant["files"]:
            f["sha256"] = hashlib.sha256((root / f["path"]).read_bytes()).hexdigest()
            f["size"] = (root / f["path"]).stat().st_size
    return m


def assert_untouched(registry: Registry) -> None:
    """No rows written, nothing left in staging."""
    assert registry.models() == []
    assert registry.db.execute("SELECT count(*) FROM events").fetchone()[0] == 0
    staging = registry.store.staging
    assert not staging.exists() or not any(staging.iterdir())


def raw_tar(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def file_info(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


# -- build -------------------------------------------------------------------------------

def test_build_twice_gives_byte_identical_archives(tmp_path):
    src = make_package(tmp_path / "src")
    r = cli("package", "build", str(src), "-o", str(tmp_path / "a.tar"), "--json",
            data_dir=tmp_path / "var")
    assert r.returncode == 0, r.stderr
    built = json.loads(r.stdout)
    for p in src.rglob("*"):  # new mtimes and modes must not change the bytes
        os.utime(p, (1_700_000_000, 1_700_000_000))
        p.chmod(0o700 if p.is_dir() else 0o600)
    digest = build_package(src, tmp_path / "b.tar")
    a, b = (tmp_path / "a.tar").read_bytes(), (tmp_path / "b.tar").read_bytes()
    assert a == b and digest == built["sha256"] == hashlib.sha256(a).hexdigest()
    with tarfile.open(tmp_path / "a.tar") as tar:
        members = tar.getmembers()
        names = [m.name for m in members]
        assert names == sorted(names) == ["fp32", "fp32/model.onnx", "int8",
                                          "int8/model.int8.onnx", "model.toml"]
        assert {(m.mtime, m.uid, m.gid, m.uname, m.gname) for m in members} == {(0, 0, 0, "", "")}
        assert {m.name: m.mode for m in members}["fp32"] == 0o755
        assert {m.mode for m in members if m.isfile()} == {0o644}
        assert all(not m.pax_headers for m in members)
        archived = load_manifest(tar.extractfile("model.toml").read())  # hashes filled in
    assert archived.to_dict()["variants"] == with_hashes(src)["variants"]


def test_build_refuses_wrong_hash_unlisted_file_and_symlink(tmp_path):
    src = make_package(tmp_path / "src")
    m = with_hashes(src)
    m["variants"][1]["files"][0]["sha256"] = "0" * 64
    (src / "model.toml").write_text(toml_text(m))
    with pytest.raises(BadRequest, match=r"int8/model\.int8\.onnx: model\.toml says sha256"):
        build_package(src, tmp_path / "x.tar")
    (src / "model.toml").write_text(toml_text(manifest_dict()))
    (src / "notes.txt").write_text("hi")
    with pytest.raises(BadRequest, match="not listed in model.toml: notes.txt"):
        build_package(src, tmp_path / "x.tar")
    (src / "notes.txt").unlink()
    (src / "link.onnx").symlink_to(src / "fp32" / "model.onnx")
    with pytest.raises(BadRequest, match="link.onnx is a symlink"):
        build_package(src, tmp_path / "x.tar")
    assert not (tmp_path / "x.tar").exists()


# -- manifest ------------------------------------------------------------------------------

def test_manifest_errors_name_the_field():
    def error(m: dict[str, Any]) -> str:
        with pytest.raises(BadRequest) as info:
            load_manifest(toml_text(m).encode(), require_hashes=False)
        return info.value.message

    m = manifest_dict()
    del m["version"]
    assert error(m) == "model.toml: missing field `version`"
    m = manifest_dict()
    m["variants"][0]["files"].append({"path": "b.bin", "sha256": "xyz"})
    assert error(m).startswith("model.toml: `variants[0].files[1].sha256`")
    m = manifest_dict()
    m["tags"]["sensitivity"] = "secret"
    assert "`tags.sensitivity`" in error(m) and "public, internal, pii, phi" in error(m)
    m = manifest_dict()
    m["tags"]["colour"] = "blue"
    assert error(m) == "model.toml: unknown field `tags.colour`"
    m = manifest_dict()
    m["variants"][1]["files"][0]["path"] = "../escape.onnx"
    assert "`variants[1].files[0].path`" in error(m)
    with pytest.raises(BadRequest, match=r"missing field `variants\[0\]\.files\[0\]\.sha256`"):
        load_manifest(toml_text(manifest_dict()).encode())  # push needs the hashes
    with pytest.raises(BadRequest, match="model.json: missing field `name`"):
        load_manifest(b'{"version": "1"}')


def test_docs_example_manifest_is_valid():
    block = re.search(r"```toml\n(.*?)```", DOCS.read_text(), re.S)[1]
    manifest = load_manifest(block.encode())
    assert manifest.lineage.parents[0].relation == "distilled-from"
    assert manifest.tags.cost_centre == "CC-1234"


# -- push ---------------------------------------------------------------------------------

def test_push_installs_show_has_lineage_and_tags_and_repush_is_idempotent(tmp_path):
    src = make_package(tmp_path / "src")
    pkg = tmp_path / "scale-1.tar"
    build_package(src, pkg)
    var = tmp_path / "var"
    r = cli("models", "push", str(pkg), "--by", "alice", "--json", data_dir=var)
    assert r.returncode == 0, r.stderr
    pushed = json.loads(r.stdout)
    assert [v["precision"] for v in pushed["variants"]] == ["int8"]
    assert pushed["precision"] == "fp32" and pushed["created_by"] == "alice"
    shown = json.loads(cli("models", "show", "scale", "--json", data_dir=var).stdout)
    version = shown["versions"][0]
    assert version["manifest"]["lineage"]["training_job"] == "job-17"
    assert version["manifest"]["tags"] == {"owner": "ml@example.com", "sensitivity": "internal",
                                           "impact": "low", "business_unit": None,
                                           "cost_centre": None}
    with tarfile.open(pkg) as tar:
        mbytes = tar.extractfile("model.toml").read()
    assert version["package_digest"] == hashlib.sha256(mbytes).hexdigest()
    assert version["inputs"] == [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}]
    again = cli("models", "push", str(pkg), "--json", data_dir=var)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == pushed
    reg = Registry(var)
    try:
        assert len(reg.versions("scale")) == 1
        assert reg.db.execute("SELECT count(*) FROM events").fetchone()[0] == 1
        for v in reg.versions()[0].all_variants():
            assert reg.store.verify(v.digest, v.files) == []
    finally:
        reg.close()
    # same name and version, different content: 409 naming both digests
    other = make_package(tmp_path / "src2", manifest_dict(description="changed"))
    build_package(other, tmp_path / "changed.tar")
    r = cli("models", "push", str(tmp_path / "changed.tar"), "--json", data_dir=var)
    assert r.returncode == 1
    error = json.loads(r.stdout)["error"]
    assert version["package_digest"] in error and "already registered" in error
    assert re.search(r"this package has digest [0-9a-f]{64}", error)


def test_push_directory_and_conflict_status(tmp_path, registry, catalog):
    src = make_package(tmp_path / "src")
    (src / "model.toml").write_text(toml_text(with_hashes(src)))
    record = push_package(registry, catalog, src, actor="bob")
    assert record.source == f"package:{src.resolve()}"
    (src / "model.toml").write_text(toml_text({**with_hashes(src), "description": "v2"}))
    with pytest.raises(Conflict) as info:
        push_package(registry, catalog, src, actor="bob")
    assert info.value.status == 409


def test_push_refuses_wrong_hash_naming_the_file(tmp_path, registry, catalog):
    src = make_package(tmp_path / "src")
    (src / "model.toml").write_text(toml_text(with_hashes(src)))
    scale_model(src / "int8" / "model.int8.onnx", 3.0)  # same size, other bytes
    with pytest.raises(BadRequest, match=r"int8/model\.int8\.onnx: sha256 mismatch"):
        push_package(registry, catalog, src, actor="t")
    assert_untouched(registry)


def test_push_refuses_manifest_missing_a_field(tmp_path, registry, catalog):
    m = manifest_dict()
    del m["tags"]
    pkg = raw_tar(tmp_path / "p.tar", [file_info("model.toml", toml_text(m).encode())])
    with pytest.raises(BadRequest, match="model.toml: missing field `tags`"):
        push_package(registry, catalog, pkg, actor="t")
    assert_untouched(registry)


@pytest.mark.parametrize("kind", ["absolute", "dotdot", "symlink", "hardlink", "device"])
def test_push_refuses_unsafe_tar_members(tmp_path, registry, catalog, kind):
    good = file_info("model.toml", b'name = "x"\n')
    bad = tarfile.TarInfo({"absolute": "/etc/evil", "dotdot": "fp32/../../evil"}.get(kind, "m"))
    if kind in ("absolute", "dotdot"):
        bad.size = 4
    elif kind == "symlink":
        bad.type, bad.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        bad.type, bad.linkname = tarfile.LNKTYPE, "model.toml"
    else:
        bad.type = tarfile.CHRTYPE
    pkg = raw_tar(tmp_path / "p.tar", [good, (bad, b"evil" if bad.size else None)])
    with pytest.raises(BadRequest, match=re.escape(repr(bad.name))):
        push_package(registry, catalog, pkg, actor="t")
    assert_untouched(registry)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "var" / "evil").exists()


def test_push_refuses_archive_over_the_size_limit(tmp_path, registry, catalog):
    pkg = raw_tar(tmp_path / "p.tar", [file_info("a.bin", b"1" * 600),
                                       file_info("b.bin", b"2" * 600)])
    with pytest.raises(BadRequest, match="'b.bin' takes the archive over"):
        push_package(registry, catalog, pkg, actor="t", max_bytes=1000)
    assert_untouched(registry)


def test_push_signature_mismatch_lists_the_differences(tmp_path, registry, catalog):
    m = manifest_dict(inputs=[{"name": "x", "datatype": "FP16", "shape": [-1, 2]}],
                      outputs=[{"name": "z", "datatype": "FP32", "shape": [-1, 2]}])
    src = make_package(tmp_path / "src", m)
    build_package(src, tmp_path / "p.tar")
    with pytest.raises(BadRequest) as info:
        push_package(registry, catalog, tmp_path / "p.tar", actor="t")
    message = info.value.message
    assert "variants[0] (fp32): the manifest's signature does not match" in message
    assert "input `x`: manifest says FP16, model has FP32" in message
    assert "output `z` is in the manifest but not in the model" in message
    assert "output `y` is in the model but not in the manifest" in message
    assert_untouched(registry)


def test_push_unknown_lineage_parent_is_404_and_known_parent_is_accepted(tmp_path, registry,
                                                                        catalog):
    parent = {"model": "teacher", "version": "1", "relation": "distilled-from"}
    m = manifest_dict(lineage={"parents": [parent]})
    src = make_package(tmp_path / "src", m)
    build_package(src, tmp_path / "p.tar")
    with pytest.raises(NotFound) as info:
        push_package(registry, catalog, tmp_path / "p.tar", actor="t")
    assert info.value.status == 404 and "lineage.parents[0]" in info.value.message
    assert "'teacher'" in info.value.message
    assert_untouched(registry)
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    (teacher / "breast_cancer.onnx").write_bytes(BREAST_CANCER.read_bytes())
    (teacher / "model.json").write_text(json.dumps({
        "name": "teacher", "version": "1",
        "variants": [{"precision": "fp32", "format": "onnx", "primary": "breast_cancer.onnx",
                      "files": [{"path": "breast_cancer.onnx"}]}],
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}],
        "outputs": [{"name": "label", "datatype": "INT64", "shape": [-1]},
                    {"name": "probabilities", "datatype": "FP32", "shape": [-1, 2]}],
        "tags": {"owner": "o", "sensitivity": "public", "impact": "high"}}))
    build_package(teacher, tmp_path / "teacher.tar")
    push_package(registry, catalog, tmp_path / "teacher.tar", actor="t")
    record = push_package(registry, catalog, tmp_path / "p.tar", actor="t")
    assert record.manifest["lineage"]["parents"] == [parent]


def test_push_missing_package_and_unknown_model_are_clear(tmp_path):
    var = tmp_path / "var"
    r = cli("models", "push", str(tmp_path / "nope.tar"), data_dir=var)
    assert r.returncode == 1 and "nope.tar does not exist" in r.stderr
    r = cli("models", "show", "ghost", "--json", data_dir=var)
    assert r.returncode == 1 and "'ghost' is not in the registry" in json.loads(r.stdout)["error"]


def test_identity_model_of_another_datatype_pushes_with_its_signature(tmp_path, registry,
                                                                      catalog):
    src = tmp_path / "src"
    src.mkdir()
    identity_model(src / "id.onnx", elem=TensorProto.INT32)
    m = manifest_dict(name="ident",
                      variants=[{"precision": "fp32", "format": "onnx", "primary": "id.onnx",
                                 "files": [{"path": "id.onnx"}]}],
                      inputs=[{"name": "x", "datatype": "INT32", "shape": [-1, 3]}],
                      outputs=[{"name": "y", "datatype": "INT32", "shape": [-1, 3]}],
                      golden=[])  # the default golden example is FP32 [1, 2]: refused
    (src / "model.toml").write_text(toml_text(m))
    build_package(src, tmp_path / "id.tar")
    record = push_package(registry, catalog, tmp_path / "id.tar", actor="t")
    assert record.inputs[0].datatype == "INT32" and record.variants == []


# -- crash safety ----------------------------------------------------------------------------

def big_model(path: Path, megabytes: int = 20) -> Path:
    """y = x * 2 + 0 * sum(big): a real model whose weights are ``megabytes`` MB."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    rng = np.random.default_rng(0)
    big = numpy_helper.from_array(rng.random(megabytes * 262_144, dtype=np.float32), "big")
    k = numpy_helper.from_array(np.array([2.0], dtype=np.float32), "k")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    nodes = [helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "zero"], ["z"]),
             helper.make_node("Mul", ["x", "k"], ["xk"]),
             helper.make_node("Add", ["xk", "z"], ["y"])]
    graph = helper.make_graph(nodes, "big", [x], [y], initializer=[big, k, zero])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture(scope="module")
def big_package(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("big")
    src = root / "src"
    (src / "fp32").mkdir(parents=True)
    (src / "int8").mkdir()
    big_model(src / "fp32" / "model.onnx")
    scale_model(src / "int8" / "model.int8.onnx", 2.0)
    (src / "model.toml").write_text(toml_text(manifest_dict(name="big")))
    build_package(src, root / "big.tar")
    return root / "big.tar"


def check_consistent(data_dir: Path) -> int:
    """Rows absent or complete, each pointing at intact artifacts; returns #versions."""
    if not (data_dir / "registry.db").exists():  # killed before the registry was created
        return 0
    conn = sqlite3.connect(data_dir / "registry.db")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        conn.close()
    registry = Registry(data_dir)
    try:
        db = registry.db
        versions = registry.versions()
        models = db.execute("SELECT count(*) FROM models").fetchone()[0]
        assert models == len({v.model for v in versions})
        for table in ("events", "stage_history"):
            assert db.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == len(versions)
        for v in versions:
            assert v.manifest["name"] == v.model and v.package_digest
            assert [x.precision for x in v.all_variants()] == ["fp32", "int8"]
            for variant in v.all_variants():
                assert registry.store.path_for(variant.digest).is_dir()
                assert registry.store.verify(variant.digest, variant.files) == []
        return len(versions)
    finally:
        registry.close()


@pytest.mark.parametrize("step", CRASH_STEPS)
def test_sigkill_at_each_step_leaves_registry_consistent(tmp_path, big_package, catalog, step):
    var = tmp_path / "var"
    r = cli("models", "push", str(big_package), data_dir=var, env={CRASH_ENV: step})
    assert r.returncode == -signal.SIGKILL, r.stderr
    assert check_consistent(var) == 0  # killed before COMMIT: the version is not there
    if step in ("after-commit-files", "before-commit"):
        assert len(list((var / "artifacts" / "sha256").iterdir())) == 2  # orphans, harmless
    registry = Registry(var)
    try:
        registry.store.clean_staging()  # what server start-up does
        record = push_package(registry, catalog, big_package, actor="retry")
        assert record.model == "big" and record.files[0]["size"] > 20_000_000
    finally:
        registry.close()
    assert check_consistent(var) == 1
    assert not any((var / "artifacts" / ".staging").iterdir())


def test_sigkill_at_arbitrary_moments_then_repush_succeeds(tmp_path, big_package):
    """Kill ``models push`` at moments spread over its work (which starts when it makes
    its extraction directory): extracting, verifying, staging, loading, storing."""
    var = tmp_path / "var"
    staging = var / "artifacts" / ".staging"
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(var)}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
    for delay in (0.0, 0.1, 0.25, 0.4, 0.55, 0.7):  # the work takes ~0.6 s here
        proc = subprocess.Popen([sys.executable, "-c", CLI, "models", "push", str(big_package)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while (proc.poll() is None and time.monotonic() < deadline
               and not (staging.is_dir() and any(staging.iterdir()))):
            time.sleep(0.002)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        assert check_consistent(var) in (0, 1)
        ArtifactStore(var / "artifacts").clean_staging()  # what server start-up does
    r = cli("models", "push", str(big_package), "--json", data_dir=var)
    assert r.returncode == 0, r.stderr
    assert check_consistent(var) == 1


def test_manifest_round_trips_through_deepcopy_and_json():
    m = load_manifest(toml_text(manifest_dict()).encode(), require_hashes=False)
    assert load_manifest(json.dumps(copy.deepcopy(m.to_dict())).encode(),
                         require_hashes=False) == m
