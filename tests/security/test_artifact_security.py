"""Signed packages, artifacts encrypted at rest, and encrypted export to a recipient.

Real keys (cryptography), real SQLite registries, real backends behind a real server on
127.0.0.1; models are built offline with random weights, so a 64-byte slice of them is
unique enough to search the disk for.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import json
import os
import secrets
import shutil
import stat
import tarfile
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from helpers import make_services, serve
from helpers.models import scale_model
from onnx import TensorProto, helper, numpy_helper

import appliance.cli.security  # noqa: F401  (registers `keys` and `package sign|decrypt`)
from appliance.cli import main
from appliance.errors import BadRequest, ConfigError, Conflict, InvalidModelFile
from appliance.packages import build_package, push_package
from appliance.packages.archive import sign_package
from appliance.packages.importer import import_model
from appliance.packages.manifest import toml_text
from appliance.plugins import get_plugin_manager
from appliance.registry import Registry
from appliance.runtime.catalog import BackendCatalog
from appliance.security.crypto_store import (
    CHUNK,
    EncryptedModelSource,
    decrypt_into_buffer,
    decrypt_to_memory,
    encrypt_file,
    is_encrypted,
    read_header,
)
from appliance.security.export import decrypt_export
from appliance.security.keys import KeyStore
from appliance.security.signing import (
    DEFAULT_POLICY,
    SignatureInvalid,
    check_signing,
    sign_manifest,
    verify_manifest,
)
from appliance.security.trust import key_id, publishers, recipients

FEATURES = 64


# -- helpers ---------------------------------------------------------------------------

def matmul_model(path: Path, seed: int, features: int = FEATURES) -> Path:
    """y = x @ W with a random W [features, features]: the file is mostly W's bytes."""
    w = np.random.default_rng(seed).standard_normal((features, features)).astype(np.float32)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, features])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, features])
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "mm", [x], [y],
                              initializer=[numpy_helper.from_array(w, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())
    return path


def write_package(root: Path, files: list[Path], *, fmt: str, primary: str,
                  inputs: list[tuple[str, int]], outputs: list[tuple[str, int]],
                  name: str = "m", version: str = "1", hashes: bool = True) -> Path:
    """A package directory holding ``files`` (already inside ``root``) and model.toml
    (with each file's sha256 and size unless ``hashes`` is False)."""
    entries = [{"path": f.relative_to(root).as_posix(),
                **({"sha256": hashlib.sha256(f.read_bytes()).hexdigest(),
                    "size": f.stat().st_size} if hashes else {})} for f in files]
    manifest = {
        "name": name, "version": version,
        "variants": [{"precision": "fp32", "format": fmt, "primary": primary,
                      "files": entries}],
        "inputs": [{"name": n, "datatype": "FP32", "shape": [-1, d]} for n, d in inputs],
        "outputs": [{"name": n, "datatype": "FP32", "shape": [-1, d]} for n, d in outputs],
        "tags": {"owner": "ml@example.com", "sensitivity": "internal", "impact": "low"}}
    (root / "model.toml").write_text(toml_text(manifest))
    return root


def onnx_package(root: Path, seed: int = 7, **kw: Any) -> Path:
    model = matmul_model(root / "fp32" / "model.onnx", seed)
    return write_package(root, [model], fmt="onnx", primary="fp32/model.onnx",
                         inputs=[("x", FEATURES)], outputs=[("y", FEATURES)], **kw)


def publisher_key(tmp_path: Path) -> tuple[Ed25519PrivateKey, Path]:
    key = Ed25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization
    pub = tmp_path / "publisher.pub.pem"
    pub.write_bytes(key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return key, pub


def distinctive_slice(path: Path) -> bytes:
    """64 bytes from the middle of ``path`` (inside its random weights)."""
    data = path.read_bytes()
    piece = data[len(data) // 2 - 32:len(data) // 2 + 32]
    assert len(set(piece)) > 40, "not random enough to be distinctive"
    return piece


def files_containing(needle: bytes, root: Path, since: float | None = None) -> list[Path]:
    """Regular files under ``root`` (modified since ``since``) whose bytes hold ``needle``."""
    hits = []
    for dirpath, _, names in os.walk(root):
        for name in names:
            path = Path(dirpath) / name
            try:
                st = path.lstat()
                if not stat.S_ISREG(st.st_mode) or (since and st.st_mtime < since):
                    continue
                with path.open("rb") as f:
                    tail = b""
                    while chunk := f.read(4 << 20):
                        if needle in tail + chunk:
                            hits.append(path)
                            break
                        tail = chunk[-len(needle):]
            except OSError:  # vanished or unreadable: not ours
                continue
    return hits


def infer(url: str, name: str, features: int) -> list[float]:
    body = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, features],
                        "data": [1.0] * features}]}
    r = httpx.post(f"{url}/v2/models/{name}/infer", json=body, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["outputs"][0]["data"]


# -- signatures ------------------------------------------------------------------------

def test_signed_manifest_verifies_and_names_the_signing_key():
    key = Ed25519PrivateKey.generate()
    manifest = b'name = "m"\nversion = "1"\n'
    sig = sign_manifest(manifest, key)
    kid = key_id(key.public_key())
    assert verify_manifest(manifest, sig, {kid: key.public_key()}) == kid


def test_tampered_manifest_is_refused_as_tampered():
    key = Ed25519PrivateKey.generate()
    sig = sign_manifest(b'version = "1"\n', key)
    with pytest.raises(SignatureInvalid, match="changed after it was signed") as err:
        verify_manifest(b'version = "2"\n', sig, {key_id(key.public_key()): key.public_key()})
    assert err.value.reason == "tampered-manifest" and err.value.status == 400


def test_wrong_signature_unknown_key_unsigned_and_foreign_formats_are_refused():
    key, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    manifest = b'name = "m"\n'
    trusted = {key_id(key.public_key()): key.public_key()}
    # another key's signature presented under the trusted key's id
    forged = sign_manifest(manifest, other).replace(
        key_id(other.public_key()).encode(), key_id(key.public_key()).encode())
    cases = [(forged, "bad-signature", "does not verify"),
             (sign_manifest(manifest, other), "unknown-key", "does not trust"),
             (None, "unsigned", "unsigned"),
             (b'{"mediaType": "application/vnd.dev.sigstore.bundle.v0.3+json"}', "malformed",
              "OpenSSF model-signing"),
             (b"not json", "malformed", "not JSON")]
    for sig, reason, text in cases:
        with pytest.raises(SignatureInvalid, match=text) as err:
            verify_manifest(manifest, sig, trusted)
        assert err.value.reason == reason


def test_signed_package_builds_pushes_and_records_its_publisher(tmp_path, registry, catalog):
    key, pub = publisher_key(tmp_path)
    pkg = onnx_package(tmp_path / "pkg", hashes=False)
    _, rewrote = sign_package(pkg, key)
    assert rewrote  # model.toml had no hashes: signing pins them in the manifest
    tar = tmp_path / "m.tar"
    build_package(pkg, tar)
    with tarfile.open(tar) as t:
        assert "model.sig" in t.getnames()
    with pytest.raises(SignatureInvalid, match="does not trust"):
        push_package(registry, catalog, tar, actor="ci")
    publishers(registry.keys.dir).add("acme", pub.read_bytes(), str(pub))
    record = push_package(registry, catalog, tar, actor="ci")
    assert record.manifest["signature"]["publisher"] == "acme"
    assert record.manifest["signature"]["key_id"] == key_id(key.public_key())
    check_signing(record, "production", DEFAULT_POLICY)  # signed: allowed


def test_build_refuses_a_signature_of_an_older_manifest(tmp_path):
    key, _ = publisher_key(tmp_path)
    pkg = onnx_package(tmp_path / "pkg")
    sign_package(pkg, key)
    (pkg / "model.toml").write_text((pkg / "model.toml").read_text().replace(
        'owner = "ml@example.com"', 'owner = "eve@example.com"'))
    with pytest.raises(BadRequest, match="does not sign this model.toml"):
        build_package(pkg, tmp_path / "m.tar")


def test_tampered_file_in_a_signed_package_is_refused_by_its_hash(tmp_path, registry, catalog):
    key, pub = publisher_key(tmp_path)
    publishers(registry.keys.dir).add("acme", pub.read_bytes(), str(pub))
    pkg = onnx_package(tmp_path / "pkg")
    sign_package(pkg, key)
    matmul_model(pkg / "fp32" / "model.onnx", seed=99)  # same size, other weights
    with pytest.raises(BadRequest, match="sha256 mismatch"):
        push_package(registry, catalog, pkg, actor="ci")
    assert registry.models() == []


def test_unsigned_package_is_refused_for_production_but_allowed_for_registered(
        tmp_path, registry, catalog):
    pkg = onnx_package(tmp_path / "pkg")
    record = push_package(registry, catalog, pkg, actor="ci")
    with pytest.raises(Conflict, match="production requires a signed package: m version 1 "
                                       "was pushed without model.sig") as err:
        check_signing(record, "production", DEFAULT_POLICY)
    assert err.value.status == 409
    for stage in ("registered", "shadow", "canary"):
        check_signing(record, stage, DEFAULT_POLICY)
    with pytest.raises(ConfigError, match="signing_policy"):
        check_signing(record, "canary", {"canary": "sometimes"})
    # the same package (same manifest bytes) pushed again, signed: the signature attaches
    key, pub = publisher_key(tmp_path)
    publishers(registry.keys.dir).add("acme", pub.read_bytes(), str(pub))
    _, rewrote = sign_package(pkg, key)
    assert not rewrote
    signed = push_package(registry, catalog, pkg, actor="ci")
    assert signed.version == "1" and signed.manifest["signature"]["publisher"] == "acme"
    check_signing(signed, "production", DEFAULT_POLICY)
    with pytest.raises(Conflict, match="no longer trusted"):
        check_signing(signed, "production", DEFAULT_POLICY, trusted_key_ids=set())


def test_added_model_is_refused_for_production_as_not_a_package(tmp_path, registry, catalog):
    record = import_model(registry, catalog, scale_model(tmp_path / "s.onnx", 2), name="s")
    with pytest.raises(Conflict, match="added with `models add`"):
        check_signing(record, "production", DEFAULT_POLICY)


def test_cli_generates_trusts_lists_and_signs(tmp_path):
    runner, var = CliRunner(), tmp_path / "var"
    r = runner.invoke(main, ["keys", "generate", "--type", "ed25519", "-o",
                             str(tmp_path / "pub.pem")])
    assert r.exit_code == 0, r.output
    assert stat.S_IMODE((tmp_path / "pub.pem").stat().st_mode) == 0o600
    r = runner.invoke(main, ["keys", "trust", str(tmp_path / "pub.pub.pem"), "--name", "acme",
                             "--data-dir", str(var)])
    assert r.exit_code == 0 and "trusting publisher acme" in r.output, r.output
    pkg = onnx_package(tmp_path / "pkg")
    r = runner.invoke(main, ["package", "sign", str(pkg), "--key", str(tmp_path / "pub.pem")])
    assert r.exit_code == 0 and (pkg / "model.sig").is_file(), r.output
    r = runner.invoke(main, ["keys", "list", "--json", "--data-dir", str(var)])
    assert [p["name"] for p in json.loads(r.output)["trusted_publishers"]] == [
        "acme"]
    (tmp_path / "pub.pem").chmod(0o644)
    r = runner.invoke(main, ["package", "sign", str(pkg), "--key", str(tmp_path / "pub.pem")])
    assert r.exit_code == 1 and "chmod 600" in r.output


# -- encryption at rest ----------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 2 * CHUNK + 17])
def test_encryption_round_trip_and_hash_of_the_plaintext(tmp_path, size):
    plain = tmp_path / "model.bin"
    plain.write_bytes(secrets.token_bytes(size))
    key = secrets.token_bytes(32)
    digest, n = encrypt_file(plain, tmp_path / "stored", key)
    assert (digest, n) == (hashlib.sha256(plain.read_bytes()).hexdigest(), size)
    assert is_encrypted(tmp_path / "stored") and not is_encrypted(plain)
    assert decrypt_to_memory(tmp_path / "stored", key) == plain.read_bytes()
    assert decrypt_into_buffer(tmp_path / "stored", key) == bytearray(plain.read_bytes())
    with (tmp_path / "stored").open("rb") as f:
        assert read_header(f, "stored").sha256 == digest


def test_damaged_truncated_swapped_or_wrongly_keyed_ciphertext_is_refused(tmp_path):
    key = secrets.token_bytes(32)
    plain = tmp_path / "p"
    plain.write_bytes(secrets.token_bytes(CHUNK + 100))
    stored = tmp_path / "model.onnx"
    encrypt_file(plain, stored, key)
    good = stored.read_bytes()

    def refused(data: bytes, match: str, **kw: Any) -> None:
        stored.write_bytes(data)
        with pytest.raises(InvalidModelFile, match=match):
            decrypt_to_memory(stored, kw.pop("key", key), **kw)

    flipped = bytearray(good)
    flipped[len(good) // 2] ^= 1
    refused(bytes(flipped), r"model.onnx is not decryptable: chunk 0 of 2")
    refused(good[:-1], "model.onnx is truncated")
    refused(good + b"x", "bytes after its last chunk")
    refused(good.replace(b'"size": ', b'"size": 1', 1), "does not unwrap")
    refused(good, "was encrypted with box key .* restore", key=secrets.token_bytes(32))
    refused(good, "the stored file was swapped", expected_sha256="0" * 64)
    refused(b"bit rot", "not an encrypted artifact")


def test_box_key_file_with_loose_permissions_is_refused(tmp_path, registry, catalog):
    record = import_model(registry, catalog, scale_model(tmp_path / "s.onnx", 2), name="s")
    box = registry.keys.dir / "box.key"
    assert stat.S_IMODE(box.stat().st_mode) == 0o600
    box.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        KeyStore(registry.data_dir).check()
    fresh = Registry(registry.data_dir)
    try:
        with pytest.raises(ConfigError, match="readable by others"):
            fresh.model_source(record).read_bytes()
    finally:
        fresh.close()


def test_corrupted_encrypted_artifact_fails_the_load_naming_the_file(tmp_path,
                                                                      ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager)
    record = import_model(services.registry, services.catalog,
                          scale_model(tmp_path / "s.onnx", 2), name="s")
    stored = services.registry.artifact_path(record)
    data = bytearray(stored.read_bytes())
    data[-5] ^= 0xFF
    stored.write_bytes(bytes(data))
    server = serve(services)
    try:
        r = httpx.get(f"{server.url}/v2/models/s/versions/1/ready")
        assert r.status_code == 503
        assert "s.onnx is not decryptable" in r.json()["error"]
    finally:
        server.stop()


def test_copied_data_dir_without_its_keys_cannot_load_models(tmp_path, registry, catalog):
    record = import_model(registry, catalog, scale_model(tmp_path / "s.onnx", 2), name="s")
    copy = tmp_path / "copy"
    shutil.copytree(registry.data_dir, copy, ignore=shutil.ignore_patterns("keys"))
    stolen = Registry(copy)
    try:
        with pytest.raises(InvalidModelFile, match=r"box.key does not exist .* without its "
                                                   r"keys/ directory"):
            stolen.model_source(record)
        assert not (copy / "keys" / "box.key").exists()  # no fresh key was made up
        stolen.keys.box_key()  # a new box key of its own opens nothing
        with pytest.raises(InvalidModelFile, match="was encrypted with box key"):
            stolen.model_source(record).read_bytes()
    finally:
        stolen.close()


def test_openvino_refuses_an_encrypted_tflite_and_litert_serves_it(tmp_path, registry):
    importlib.import_module("openvino")
    importlib.import_module("ai_edge_litert.interpreter")
    import appliance_litert
    import appliance_openvino

    from appliance.testing.tflite_builder import build_fully_connected_model

    pm = get_plugin_manager(autoload=False, extra=(appliance_openvino, appliance_litert))
    catalog = BackendCatalog(pm, {"tflite": ["openvino", "litert"]})
    record = import_model(registry, catalog,
                          build_fully_connected_model(tmp_path / "fc.tflite"), name="fc")
    source = registry.model_source(record)
    assert isinstance(source, EncryptedModelSource)
    with pytest.raises(InvalidModelFile, match="encrypted at rest .* litert"):
        appliance_openvino.OpenVINOBackend().load(source, options={})
    backend, model = catalog.load(source)
    assert backend.name == "litert"
    model.close()


def _package_for(kind: str, root: Path, seed: int) -> tuple[Path, Path, int]:
    """A package of ``kind`` and the file whose middle is searched for; output width."""
    if kind == "onnx":
        pkg = onnx_package(root, seed=seed)
        return pkg, pkg / "fp32" / "model.onnx", FEATURES
    if kind == "openvino":
        from appliance.testing.ov_models import build_openvino_ir
        onnx_path = matmul_model(root.parent / "ir-src" / "model.onnx", seed)
        xml = build_openvino_ir(root / "ir" / "model.xml", onnx_path)
        shutil.rmtree(onnx_path.parent)
        pkg = write_package(root, [xml, xml.with_suffix(".bin")], fmt="openvino",
                            primary="ir/model.xml", inputs=[("x", FEATURES)],
                            outputs=[("y", FEATURES)])
        return pkg, xml.with_suffix(".bin"), FEATURES
    from appliance.testing.tflite_builder import build_fully_connected_model
    (root / "fc").mkdir(parents=True)
    path = build_fully_connected_model(root / "fc" / "model.tflite", in_features=FEATURES,
                                       out_features=FEATURES, seed=seed)
    pkg = write_package(root, [path], fmt="tflite", primary="fc/model.tflite",
                        inputs=[("x", FEATURES)], outputs=[("probs", FEATURES)])
    return pkg, path, FEATURES


@pytest.mark.parametrize("kind", ["onnx", "openvino", "tflite"])
def test_no_plaintext_model_bytes_on_disk_after_push_load_and_inference(tmp_path, kind):
    if kind == "openvino":
        importlib.import_module("openvino")
        import appliance_openvino as plugin
    elif kind == "tflite":
        importlib.import_module("ai_edge_litert.interpreter")
        import appliance_litert as plugin
    else:
        import appliance_onnxruntime as plugin
    started = time.time() - 1
    pm = get_plugin_manager(autoload=False, extra=(plugin,))
    services = make_services(tmp_path / "var", pm)
    pkg, weights, width = _package_for(kind, tmp_path / "publisher", secrets.randbits(32))
    needle = distinctive_slice(weights)
    tar = tmp_path / "publisher.tar"
    build_package(pkg, tar)
    push_package(services.registry, services.catalog, tar, actor="ci")
    shutil.rmtree(tmp_path / "publisher")  # the publisher's own plaintext copies
    tar.unlink()
    server = serve(services)
    try:
        assert len(infer(server.url, "m", width)) == width
        metadata = httpx.get(f"{server.url}/v2/models/m").json()
    finally:
        server.stop()
    assert metadata["parameters"]["backend"] == {"onnx": "onnxruntime", "openvino": "openvino",
                                                 "tflite": "litert"}[kind]
    assert files_containing(needle, tmp_path / "var") == []
    assert files_containing(needle, Path(tempfile.gettempdir()), since=started) == []
    stored = list((tmp_path / "var" / "artifacts" / "sha256").rglob("*.*"))
    assert stored and all(is_encrypted(p) for p in stored)


# -- export ------------------------------------------------------------------------------

@pytest.fixture
def exported(tmp_path, registry, catalog):
    """A signed package pushed into ``registry``, and a recipient ``bob``."""
    key, pub = publisher_key(tmp_path)
    publishers(registry.keys.dir).add("acme", pub.read_bytes(), str(pub))
    pkg = onnx_package(tmp_path / "pkg", seed=3)
    sign_package(pkg, key)
    push_package(registry, catalog, pkg, actor="ci")
    bob = X25519PrivateKey.generate()
    from cryptography.hazmat.primitives import serialization
    pem = bob.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    recipients(registry.keys.dir).add("bob", pem, "bob.pem")
    return SimpleNamespace(pkg=pkg, bob=bob, key=key, pub=pub)


@contextmanager
def _export_server(registry: Registry) -> Iterator[tuple[str, dict[str, str]]]:
    """The real app, auth on, over ``registry``'s data dir, and a models:export token."""
    import appliance_onnxruntime

    from appliance.cli.tokens import mint_token

    services = make_services(registry.data_dir, get_plugin_manager(
        autoload=False, extra=(appliance_onnxruntime,)), auth={"mode": "on"})
    auth = services.settings.auth
    token, _ = mint_token(registry.data_dir, issuer=auth.local_issuer,
                          audience=auth.local_audience, subject="exporter",
                          scopes=["models:export"], roles=[], ttl_s=600)
    server = serve(services)
    try:
        yield server.url, {"Authorization": f"Bearer {token}"}
    finally:
        server.stop()


def test_export_then_recipient_decrypt_gives_back_the_original_package(
        tmp_path, registry, catalog, exported):
    with _export_server(registry) as (url, token):
        r = httpx.get(f"{url}/v1/models/m/versions/1/export?recipient=bob", timeout=30,
                      headers=token)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/x-tar"
    assert int(r.headers["content-length"]) == len(r.content)
    original = (exported.pkg / "fp32" / "model.onnx").read_bytes()
    assert distinctive_slice(exported.pkg / "fp32" / "model.onnx") not in r.content
    with tarfile.open(fileobj=io.BytesIO(r.content)) as t:
        assert t.getnames()[:3] == ["export.json", "model.toml", "model.sig"]
    (tmp_path / "bob.tar").write_bytes(r.content)
    out = tmp_path / "received"
    summary = decrypt_export(tmp_path / "bob.tar", exported.bob, out)
    assert summary["recipient"] == "bob" and summary["signature"]["publisher"] == "acme"
    assert (out / "fp32" / "model.onnx").read_bytes() == original
    for name in ("model.toml", "model.sig"):
        assert (out / name).read_bytes() == (exported.pkg / name).read_bytes()
    # the received package is the signed original: another box verifies and installs it
    other = Registry(tmp_path / "other")
    try:
        publishers(other.keys.dir).add("acme", exported.pub.read_bytes(), "acme.pem")
        record = push_package(other, catalog, out, actor="bob")
        assert record.manifest["signature"]["publisher"] == "acme"
    finally:
        other.close()
    events = registry.db.execute("SELECT action, detail FROM events WHERE action = 'export'")
    assert '"recipient": "bob"' in events.fetchone()[1]


def test_recipient_cli_decrypt_and_wrong_key_refused(tmp_path, registry, exported):
    with _export_server(registry) as (url, token):
        content = httpx.get(f"{url}/v1/models/m/versions/1/export?recipient=bob",
                            timeout=30, headers=token).content
    (tmp_path / "e.tar").write_bytes(content)
    from cryptography.hazmat.primitives import serialization
    for name, key in (("bob.pem", exported.bob), ("eve.pem", X25519PrivateKey.generate())):
        path = tmp_path / name
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        path.chmod(0o600)
    runner = CliRunner()
    r = runner.invoke(main, ["package", "decrypt", str(tmp_path / "e.tar"), "--key",
                             str(tmp_path / "eve.pem"), "-o", str(tmp_path / "eve")])
    assert r.exit_code == 1 and "is for recipient 'bob'" in r.output
    assert not (tmp_path / "eve").exists()
    r = runner.invoke(main, ["package", "decrypt", str(tmp_path / "e.tar"), "--key",
                             str(tmp_path / "bob.pem"), "-o", str(tmp_path / "bob")])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "bob" / "fp32" / "model.onnx").read_bytes() == (
        exported.pkg / "fp32" / "model.onnx").read_bytes()


def test_export_checks_the_token_first_then_the_recipient(registry, exported):
    with _export_server(registry) as (url, ok), httpx.Client(base_url=url, timeout=30) as http:
        assert http.get("/v1/models/nope/versions/9/export").status_code == 401
        assert http.get("/v1/models/m/versions/1/export?recipient=bob").status_code == 401
        r = http.get("/v1/models/m/versions/1/export", headers=ok)
        assert r.status_code == 400 and "recipient" in r.json()["error"]
        r = http.get("/v1/models/m/versions/1/export?recipient=eve", headers=ok)
        assert r.status_code == 404 and "no recipient named 'eve'" in r.json()["error"]
        assert http.get("/v1/models/nope/versions/1/export?recipient=bob",
                        headers=ok).status_code == 404
        assert http.get("/v1/models/m/versions/1/export?recipient=bob",
                        headers=ok).status_code == 200


def test_a_plugin_supplied_box_key_is_used_and_no_key_file_is_written(tmp_path, catalog):
    import appliance
    from appliance.security.crypto_store import plugin_box_key

    class Kms:
        key = secrets.token_bytes(32)

        @appliance.hookimpl
        def appliance_box_key(self, data_dir: Path) -> bytes:
            return self.key

    pm = get_plugin_manager(autoload=False, extra=(Kms(),))
    data = tmp_path / "var"
    registry = Registry(data, box_key_provider=plugin_box_key(pm, data))
    try:
        record = import_model(registry, catalog, scale_model(tmp_path / "s.onnx", 2), name="s")
        assert is_encrypted(registry.artifact_path(record))
        assert not (data / "keys" / "box.key").exists()
        assert registry.model_source(record).read_bytes() == (tmp_path / "s.onnx").read_bytes()
    finally:
        registry.close()
    without = Registry(data)  # e.g. a tool that forgot the plugin: a clear refusal
    try:
        with pytest.raises(InvalidModelFile, match="no plugin supplies the box key"):
            without.model_source(record)
    finally:
        without.close()


def test_export_of_a_plaintext_store_is_encrypted_for_the_recipient_too(tmp_path, catalog):
    from appliance.security.export import plan_export

    registry = Registry(tmp_path / "var", encrypt_artifacts=False)  # stored before encryption
    try:
        model = scale_model(tmp_path / "s.onnx", 2)
        record = import_model(registry, catalog, model, name="s")
        assert not is_encrypted(registry.artifact_path(record))
        bob = X25519PrivateKey.generate()
        from cryptography.hazmat.primitives import serialization
        recipients(registry.keys.dir).add("bob", bob.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo), "b")
        plan = plan_export(registry, record, "bob")
        data = b"".join(plan.stream())
    finally:
        registry.close()
    assert len(data) == plan.size and model.read_bytes() not in data
    (tmp_path / "e.tar").write_bytes(data)
    summary = decrypt_export(tmp_path / "e.tar", bob, tmp_path / "out")
    assert summary["manifest"] is None and summary["signature"] is None
    assert (tmp_path / "out" / "fp32" / "s.onnx").read_bytes() == model.read_bytes()


def test_signing_policy_validation_names_the_bad_entry():
    from appliance.security.signing import validate_policy

    assert validate_policy(DEFAULT_POLICY) == {"production": "required"}
    with pytest.raises(ConfigError, match="'prod' = 'required' is not valid"):
        validate_policy({"prod": "required"})
    with pytest.raises(ConfigError, match="'canary' = 'yes'"):
        validate_policy({"canary": "yes"})
