"""Security review on import, SBOMs and weights fingerprints.

Every file is real: pickles from pickle/joblib, PyTorch's zip layout, ONNX models with
real external data, TFLite flatbuffers from the schema's object API, OpenVINO IR from
the converter. The registry is a real SQLite database; the CLI runs as a subprocess.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import pickle
import re
import subprocess
import sys
import tarfile
import zipfile
from datetime import datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import onnx
import pytest
from helpers.models import identity_model, scale_manifest, scale_model
from onnx import TensorProto, helper, numpy_helper

from appliance.errors import BadRequest
from appliance.packages import build_package, push_package
from appliance.packages.manifest import toml_text
from appliance.security.fingerprint import (
    find_fingerprint,
    fingerprint_file,
    record_fingerprint,
)
from appliance.security.sbom import package_sbom
from appliance.security.scan import DEFAULT_ONNX_DOMAINS, ScanPolicy, scan_package
from appliance.testing.ov_models import build_onnx_linear_model, build_openvino_ir
from appliance.testing.tflite_builder import (
    _GraphBuilder,
    build_add_mul_model,
    build_fully_connected_model,
)

CLI = "import appliance.cli.scan; from appliance.cli import main; main()"


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir)}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)  # the CLI uses the entry points
    return subprocess.run([sys.executable, "-c", CLI, *args], env=env, capture_output=True,
                          text=True, timeout=60)


def refusals(report: Any, check: str | None = None) -> list[str]:
    return [f"{f.file}: {f.message}" for f in report.of("refuse")
            if check is None or f.check == check]


def linear_onnx(path: Path, w: np.ndarray, b: np.ndarray, *, names: tuple[str, str] = ("W", "b"),
                producer: str = "trainer", raw: bool = True) -> Path:
    """y = x @ W + b with W and b as initializers named ``names``."""
    wn, bn = names
    inits = [numpy_helper.from_array(w, wn), numpy_helper.from_array(b, bn)]
    if not raw:  # the same numbers in the typed field instead of raw_data
        for t, a in zip(inits, (w, b)):
            t.ClearField("raw_data")
            t.float_data.extend(a.ravel().tolist())
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", wn], ["xw"]), helper.make_node("Add", ["xw", bn], ["y"])],
        "linear", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", w.shape[0]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", w.shape[1]])],
        initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)],
                              producer_name=producer)
    model.ir_version = 8
    path.write_bytes(model.SerializeToString())
    return path


def weights(seed: int = 0, n: int = 64) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n, n)).astype(np.float32),
            rng.standard_normal(n).astype(np.float32))


def external_data_model(root: Path) -> Path:
    """A model whose 16 KiB weight lives in ``model.data`` beside it."""
    root.mkdir(parents=True, exist_ok=True)
    path = linear_onnx(root / "model.onnx", *weights())
    model = onnx.load(str(path))
    onnx.save_model(model, str(path), save_as_external_data=True,
                    all_tensors_to_one_file=True, location="model.data", size_threshold=1024)
    return path


def set_external_location(path: Path, location: str) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for tensor in model.graph.initializer:
        for entry in tensor.external_data:
            if entry.key == "location":
                entry.value = location
    path.write_bytes(model.SerializeToString())


def custom_op_onnx(path: Path, domain: str = "com.evil") -> Path:
    node = helper.make_node("Exec", ["x"], ["y"], domain=domain)
    graph = helper.make_graph([node], "custom",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17),
                                                    helper.make_opsetid(domain, 1)])
    path.write_bytes(model.SerializeToString())
    return path


def custom_op_tflite(path: Path, name: str = "EvilOp") -> Path:
    g = _GraphBuilder()
    x, y = g.tensor("x", [1, 4]), g.tensor("y", [1, 4])
    code = g.s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = g.s.BuiltinOperator.CUSTOM
    code.customCode, code.version = name, 1
    g.opcodes.append(code)
    op = g.s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [x], [y]
    g.operators.append(op)
    return g.save(path, [x], [y], "a custom operator")


def clean_package(root: Path, *, factor: float = 2.0) -> Path:
    """A package with an ONNX, a TFLite and an OpenVINO IR variant, manifest without hashes."""
    (root / "fp32").mkdir(parents=True)
    scale_model(root / "fp32" / "model.onnx", factor)
    (root / "int8").mkdir()
    scale_model(root / "int8" / "model.int8.onnx", factor)
    manifest = scale_manifest()
    (root / "model.toml").write_text(toml_text(manifest))
    return root


# -- scan: pickles -----------------------------------------------------------------------

@pytest.mark.parametrize(("name", "protocol"), [("weights.bin", 4), ("weights.bin", 2),
                                            ("state.pkl", 5), ("notes.txt", 0)])
def test_pickle_file_is_refused_by_its_content(tmp_path, name, protocol):
    # protocol 0 has no header: it is caught because it imports a callable
    (tmp_path / name).write_bytes(pickle.dumps({"w": [1.0, 2.0], "f": len}, protocol=protocol))
    report = scan_package(tmp_path)
    assert report.refused
    assert refusals(report, "pickle")[0].startswith(f"{name}: ")


def test_pytorch_zip_checkpoint_is_refused_whatever_its_name(tmp_path):
    with zipfile.ZipFile(tmp_path / "weights.dat", "w") as zf:  # torch.save's layout
        zf.writestr("archive/data.pkl", pickle.dumps({"w": 1}, protocol=2))
        zf.writestr("archive/version", "3\n")
        zf.writestr("archive/data/0", b"\x00" * 64)
    report = scan_package(tmp_path)
    assert refusals(report, "pickle") == [
        "weights.dat: a zip holding archive/data.pkl (the PyTorch checkpoint layout, "
        "torch.save); pickles run code when loaded: convert the model to ONNX, TFLite or "
        "OpenVINO IR"]


@pytest.mark.parametrize("compress", [0, 3, ("gzip", 3), ("bz2", 3), ("xz", 3), ("lzma", 3)],
                         ids=["plain", "zlib", "gzip", "bz2", "xz", "lzma"])
def test_joblib_file_is_refused_plain_or_compressed(tmp_path, compress):
    joblib.dump({"coef": np.ones(8)}, tmp_path / "classifier.dat", compress=compress)
    report = scan_package(tmp_path)
    assert [f.file for f in report.of("refuse")] == ["classifier.dat"]


def test_object_npy_is_refused_and_numeric_npy_passes(tmp_path):
    np.save(tmp_path / "numbers.npy", np.arange(10, dtype=np.float32))
    assert not scan_package(tmp_path).findings
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert refusals(scan_package(tmp_path)) == [
        "objects.npy: the file is a numpy array of Python objects; pickles run code when "
        "loaded: convert the model to ONNX, TFLite or OpenVINO IR"]


# -- scan: paths -------------------------------------------------------------------------

def test_onnx_external_data_inside_the_package_passes(tmp_path):
    external_data_model(tmp_path / "pkg")
    report = scan_package(tmp_path / "pkg")
    assert report.files == ["model.data", "model.onnx"] and not report.findings


@pytest.mark.parametrize(("location", "why"), [
    ("../../etc/passwd", "has a '..' component"),
    ("/etc/passwd", "is an absolute path"),
    ("C:\\Windows\\win.ini", "is an absolute path"),
    ("link.data", "goes through the symlink link.data"),
])
def test_onnx_external_data_escaping_the_package_is_refused(tmp_path, location, why):
    path = external_data_model(tmp_path / "pkg")
    (tmp_path / "pkg" / "link.data").symlink_to("/etc/passwd")
    set_external_location(path, location)
    report = scan_package(tmp_path / "pkg")
    assert refusals(report, "external-data") == [
        f"model.onnx: external data location {location!r} {why}"]
    assert refusals(report, "symlink")  # the symlink itself is refused too


def test_archive_member_escaping_is_refused_and_a_built_archive_passes(tmp_path):
    built = tmp_path / "ok.tar"
    build_package(clean_package(tmp_path / "src"), built)
    report = scan_package(built)
    assert not report.findings and "fp32/model.onnx" in report.files
    bad = tmp_path / "bad.tar"
    with tarfile.open(bad, "w") as tar:
        for name in ("../evil.onnx", "/abs.onnx"):
            info = tarfile.TarInfo(name)
            info.size = 4
            tar.addfile(info, fileobj=io.BytesIO(b"abcd"))
    assert sorted(refusals(scan_package(bad), "path")) == [
        "../evil.onnx: archive member '../evil.onnx' has a '..' component",
        "/abs.onnx: archive member '/abs.onnx' has an absolute path"]


# -- scan: operators and sizes ---------------------------------------------------------------

def test_onnx_custom_op_domain_is_refused_unless_allowed(tmp_path):
    path = custom_op_onnx(tmp_path / "model.onnx")
    assert refusals(scan_package(path), "custom-op") == [
        "model.onnx: operator 'Exec' of domain 'com.evil' is not on the allowlist (, ai.onnx, "
        "ai.onnx.ml, com.microsoft): custom ops load native code"]
    allowed = ScanPolicy(onnx_domains=DEFAULT_ONNX_DOMAINS | {"com.evil"})
    assert not scan_package(path, policy=allowed).findings


def test_tflite_custom_op_is_refused_unless_allowed(tmp_path):
    path = custom_op_tflite(tmp_path / "model.tflite")
    assert refusals(scan_package(path), "custom-op") == [
        "model.tflite: custom operator 'EvilOp' is not on the allowlist: custom ops need "
        "native code the box does not ship"]
    allowed = ScanPolicy(tflite_custom_ops=frozenset({"EvilOp"}))
    assert not scan_package(path, policy=allowed).findings


def test_oversized_declared_onnx_input_is_refused(tmp_path):
    identity_model(tmp_path / "huge.onnx", shape=(100000, 100000))
    assert refusals(scan_package(tmp_path), "tensor-size") == [
        "huge.onnx: graph input 'x' declares [100000, 100000], 40000000000 bytes, over the "
        f"limit of {2 << 30}",
        "huge.onnx: graph output 'y' declares [100000, 100000], 40000000000 bytes, over the "
        f"limit of {2 << 30}"]
    # the same model with a dynamic batch declares nothing it could not hold
    identity_model(tmp_path / "huge.onnx", shape=(None, 100000))
    assert not scan_package(tmp_path).findings


def test_oversized_openvino_constant_and_range_past_the_bin_are_refused(tmp_path):
    xml = build_openvino_ir(tmp_path / "ir" / "linear.xml",
                            build_onnx_linear_model(tmp_path / "linear.onnx"))
    assert not scan_package(tmp_path / "ir").findings
    text = xml.read_text()
    xml.write_text(re.sub(r'shape="3, 4" offset="0" size="48"',
                          'shape="300000, 400000" offset="0" size="48"', text, count=1))
    found = refusals(scan_package(tmp_path / "ir"), "tensor-size")
    assert len(found) == 1 and "declares 480000000000 bytes" in found[0]
    xml.write_text(text.replace('offset="48" size="12"', 'offset="48" size="4096"'))
    found = refusals(scan_package(tmp_path / "ir"), "tensor-size")
    assert len(found) == 1 and "reads bytes 48..4144 of linear.bin, which has 60" in found[0]


def test_xml_with_entities_is_refused(tmp_path):
    (tmp_path / "bomb.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE net [<!ENTITY a "aaaaaaaaaa">'
        '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;">]><net>&b;</net>')
    assert refusals(scan_package(tmp_path), "parse") == [
        "bomb.xml: is not a readable OpenVINO IR: the XML declares a DOCTYPE or entities, "
        "which an IR never has"]


def test_file_in_the_at_rest_encryption_format_is_warned_about_not_refused(tmp_path):
    from appliance.security.crypto_store import MAGIC

    (tmp_path / "model.onnx").write_bytes(MAGIC + os.urandom(256))
    report = scan_package(tmp_path)
    assert not report.refused
    assert [(f.file, f.check) for f in report.of("warn")] == [("model.onnx", "encrypted")]


def test_clean_package_of_onnx_tflite_and_openvino_passes(tmp_path):
    root = clean_package(tmp_path / "pkg")
    build_add_mul_model(root / "add_mul.tflite")
    build_fully_connected_model(root / "fc.tflite")
    build_openvino_ir(root / "ir" / "linear.xml", build_onnx_linear_model(root / "l.onnx"))
    (root / "l.onnx").rename(root / "linear.onnx")
    report = scan_package(root)
    assert report.findings == [] and not report.refused
    assert sorted(report.files) == ["add_mul.tflite", "fc.tflite", "fp32/model.onnx",
                                    "int8/model.int8.onnx", "ir/linear.bin", "ir/linear.xml",
                                    "linear.onnx", "model.toml"]


def test_push_refuses_a_package_holding_a_pickle_and_stores_nothing(tmp_path, registry,
                                                                     catalog):
    root = clean_package(tmp_path / "pkg")
    (root / "fp32" / "tokenizer.pkl").write_bytes(pickle.dumps({"vocab": ["a"]}))
    text = (root / "model.toml").read_text().replace(
        '{ path = "fp32/model.onnx" }', '{ path = "fp32/model.onnx" }, '
        '{ path = "fp32/tokenizer.pkl" }')
    (root / "model.toml").write_text(text)
    build_package(root, tmp_path / "pkg.tar")
    with pytest.raises(BadRequest, match=r"security scan refused \S*pkg\.tar: "
                                         r"fp32/tokenizer\.pkl: \.pkl files are pickles"):
        push_package(registry, catalog, tmp_path / "pkg.tar", actor="t")
    assert registry.models() == []
    assert not any(registry.store.staging.iterdir())


def test_models_scan_cli_exits_1_on_refusal_and_0_when_clean(tmp_path):
    (tmp_path / "bad").mkdir()
    custom_op_onnx(tmp_path / "bad" / "model.onnx")
    r = cli("models", "scan", str(tmp_path / "bad"), "--json", data_dir=tmp_path / "var")
    assert r.returncode == 1, r.stderr
    report = json.loads(r.stdout)
    assert report["refused"] is True
    assert [f["check"] for f in report["findings"]] == ["custom-op"]
    r = cli("models", "scan", str(tmp_path / "bad"), "--allow-domain", "com.evil",
            data_dir=tmp_path / "var")
    assert r.returncode == 0, r.stderr
    assert "passed (1 file(s), 0 refused, 0 warning(s))" in r.stdout


# -- SBOM ----------------------------------------------------------------------------------

COMPONENT_TYPES = {"application", "framework", "library", "container", "platform",
                   "operating-system", "device", "device-driver", "firmware", "file",
                   "machine-learning-model", "data"}


def assert_cyclonedx_15(doc: dict[str, Any]) -> None:
    """The required fields and formats of a CycloneDX 1.5 JSON BOM that we use."""
    assert doc["bomFormat"] == "CycloneDX" and doc["specVersion"] == "1.5"
    assert re.fullmatch(r"urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                        doc["serialNumber"])
    assert isinstance(doc["version"], int) and doc["version"] >= 1
    assert datetime.fromisoformat(doc["metadata"]["timestamp"]).tzinfo is not None
    assert doc["metadata"]["component"]["type"] == "machine-learning-model"
    refs = [doc["metadata"]["component"]["bom-ref"]]
    for c in doc["components"]:
        assert c["type"] in COMPONENT_TYPES and c["name"] and c["version"]
        refs.append(c["bom-ref"])
        for h in c.get("hashes", []):
            assert h["alg"] == "SHA-256" and re.fullmatch(r"[0-9a-f]{64}", h["content"])
        if "purl" in c:
            assert re.fullmatch(r"pkg:pypi/[a-z0-9.-]+@\S+", c["purl"])
        for p in c.get("properties", []):
            assert set(p) == {"name", "value"} and isinstance(p["value"], str)
    assert len(refs) == len(set(refs)), "bom-refs are unique"
    for dep in doc["dependencies"]:
        assert dep["ref"] in refs and set(dep["dependsOn"]) <= set(refs)
    json.loads(json.dumps(doc))


def test_package_sbom_is_cyclonedx_with_file_hashes_and_the_runtime(tmp_path):
    root = clean_package(tmp_path / "pkg")
    doc = package_sbom(root)
    assert_cyclonedx_15(doc)
    files = {c["name"]: c for c in doc["components"] if c["type"] != "library"}
    assert set(files) == {"fp32/model.onnx", "int8/model.int8.onnx", "model.toml"}
    for name, c in files.items():
        assert c["hashes"][0]["content"] == hashlib.sha256((root / name).read_bytes()).hexdigest()
    assert files["fp32/model.onnx"]["type"] == "machine-learning-model"
    assert files["model.toml"]["type"] == "file"
    libs = {c["name"]: c for c in doc["components"] if c["type"] == "library"}
    version = metadata.version("onnxruntime")
    assert libs["onnxruntime"]["version"] == version
    assert libs["onnxruntime"]["purl"] == f"pkg:pypi/onnxruntime@{version}"
    assert {"numpy", "appliance"} <= set(libs) and "ai-edge-litert" not in libs  # no tflite
    assert doc["metadata"]["component"]["name"] == "scale"
    assert {"name": "appliance:tag:owner", "value": "ml@example.com"} in \
        doc["metadata"]["component"]["properties"]
    assert package_sbom(root)["serialNumber"] != doc["serialNumber"]


def test_models_sbom_cli_prints_the_sbom_of_a_pushed_version(tmp_path, registry, catalog):
    build_package(clean_package(tmp_path / "pkg"), tmp_path / "pkg.tar")
    record = push_package(registry, catalog, tmp_path / "pkg.tar", actor="t")
    prints = record_fingerprint(registry, record)
    r = cli("models", "sbom", "scale", "1", data_dir=tmp_path / "var")
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    assert_cyclonedx_15(doc)
    # the SBOM stored at push time (package paths) or one rebuilt from the record
    listed = {c["hashes"][0]["content"] for c in doc["components"] if c["type"] != "library"}
    assert {f["sha256"] for v in record.all_variants() for f in v.files} <= listed
    assert {"name": "appliance:fingerprint:fp32", "value": prints["fp32"].digest} in \
        doc["metadata"]["component"]["properties"]
    assert "onnxruntime" in {c["name"] for c in doc["components"]}


# -- fingerprints ----------------------------------------------------------------------------

def resaved(src: Path, dst: Path, *, producer: str, rename: dict[str, str]) -> Path:
    """``src`` re-saved as another tool would: other producer and metadata, renamed and
    reordered initializers, float_data instead of raw_data."""
    model = onnx.load(str(src))
    model.producer_name, model.producer_version = producer, "9.9"
    model.doc_string = "re-exported"
    for t in model.graph.initializer:
        array = numpy_helper.to_array(t)
        t.ClearField("raw_data")
        t.float_data.extend(array.ravel().tolist())
        t.name = rename.get(t.name, t.name)
    for node in model.graph.node:
        node.input[:] = [rename.get(i, i) for i in node.input]
    inits = list(model.graph.initializer)[::-1]
    del model.graph.initializer[:]
    model.graph.initializer.extend(inits)
    dst.write_bytes(model.SerializeToString())
    return dst


def test_fingerprint_unchanged_by_resave_with_other_producer_and_renamed_initializers(tmp_path):
    original = linear_onnx(tmp_path / "a.onnx", *weights(), producer="trainer")
    copy = resaved(original, tmp_path / "b.onnx", producer="exporter",
                   rename={"W": "dense/kernel:0", "b": "dense/bias:0"})
    assert copy.read_bytes() != original.read_bytes()
    assert fingerprint_file(copy) == fingerprint_file(original)
    assert fingerprint_file(original).tensors == 2


def test_fingerprint_changes_when_one_weight_changes(tmp_path):
    w, b = weights()
    before = fingerprint_file(linear_onnx(tmp_path / "a.onnx", w, b))
    w = w.copy()
    w[3, 7] = np.nextafter(w[3, 7], np.float32(np.inf))  # one ulp of one weight
    assert fingerprint_file(linear_onnx(tmp_path / "b.onnx", w, b)) != before


def test_external_data_and_typed_fields_give_the_same_fingerprint_as_raw_data(tmp_path):
    w, b = weights()
    inline = fingerprint_file(linear_onnx(tmp_path / "inline.onnx", w, b))
    assert fingerprint_file(linear_onnx(tmp_path / "typed.onnx", w, b, raw=False)) == inline
    assert fingerprint_file(external_data_model(tmp_path / "ext")) == inline


def test_tflite_fingerprint_ignores_tensor_names_but_not_weights(tmp_path):
    from ai_edge_litert import schema_py_generated as s

    path = build_fully_connected_model(tmp_path / "fc.tflite", seed=0)
    model = s.ModelT.InitFromObj(s.Model.GetRootAs(path.read_bytes(), 0))
    for i, tensor in enumerate(model.subgraphs[0].tensors):
        tensor.name = f"renamed_{i}"
    model.description = "re-exported"
    import flatbuffers

    fb = flatbuffers.Builder(1024)
    fb.Finish(model.Pack(fb), file_identifier=b"TFL3")
    (tmp_path / "copy.tflite").write_bytes(bytes(fb.Output()))
    assert fingerprint_file(tmp_path / "copy.tflite") == fingerprint_file(path)
    other = build_fully_connected_model(tmp_path / "other.tflite", seed=1)
    assert fingerprint_file(other) != fingerprint_file(path)


def test_openvino_fingerprint_ignores_conversion_metadata_but_not_weights(tmp_path):
    onnx_a = build_onnx_linear_model(tmp_path / "a.onnx", seed=0)
    first = build_openvino_ir(tmp_path / "one" / "m.xml", onnx_a)
    second = build_openvino_ir(tmp_path / "two" / "m.xml", onnx_a.rename(tmp_path / "b.onnx"))
    assert first.read_bytes() != second.read_bytes()  # rt_info names the source file
    assert fingerprint_file(first) == fingerprint_file(second)
    other = build_openvino_ir(tmp_path / "three" / "m.xml",
                              build_onnx_linear_model(tmp_path / "c.onnx", seed=1))
    assert fingerprint_file(other) != fingerprint_file(first)


def test_model_without_weights_matches_nothing(tmp_path, registry):
    fp = fingerprint_file(identity_model(tmp_path / "id.onnx"))
    assert fp.tensors == 0 and find_fingerprint(registry, fp) == []


def test_fingerprint_check_cli_finds_the_registered_version(tmp_path, registry, catalog):
    root = clean_package(tmp_path / "pkg", factor=3.0)
    build_package(root, tmp_path / "pkg.tar")
    record = push_package(registry, catalog, tmp_path / "pkg.tar", actor="t")
    prints = record_fingerprint(registry, record)  # reads the stored (encrypted) files
    assert prints["fp32"] == fingerprint_file(root / "fp32" / "model.onnx")
    (tmp_path / "found").mkdir()
    copy = resaved(root / "fp32" / "model.onnx", tmp_path / "found" / "renamed.onnx",
                   producer="someone", rename={"k": "scale_factor"})
    r = cli("fingerprint", "check", str(copy), "--json", data_dir=tmp_path / "var")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["matched"] is True
    assert [(m["model"], m["version"], m["precision"], m["stage"]) for m in out["matches"]] == [
        ("scale", "1", "fp32", "registered"), ("scale", "1", "int8", "registered")]
    scale_model(tmp_path / "found" / "other.onnx", 4.0)
    r = cli("fingerprint", "check", str(tmp_path / "found" / "other.onnx"),
            data_dir=tmp_path / "var")
    assert r.returncode == 0 and "no registered version has these weights" in r.stdout


def test_fingerprint_backfill_cli_records_versions_added_before(tmp_path, registry, catalog):
    from appliance.packages.importer import import_model

    import_model(registry, catalog, linear_onnx(tmp_path / "lin.onnx", *weights(seed=5)),
                 name="lin")
    r = cli("fingerprint", "backfill", data_dir=tmp_path / "var")
    assert r.returncode == 0, r.stderr
    assert "fingerprinted 1 version(s); 0 failed" in r.stdout
    r = cli("fingerprint", "check", str(tmp_path / "lin.onnx"), data_dir=tmp_path / "var")
    assert "matches lin version 1 (fp32, stage registered)" in r.stdout


def test_fingerprint_will_not_read_external_data_outside_the_model_directory(tmp_path):
    path = external_data_model(tmp_path / "found")
    set_external_location(path, "../../etc/passwd")
    with pytest.raises(BadRequest, match=r"'\.\./\.\./etc/passwd', has a '\.\.' component"):
        fingerprint_file(path)
