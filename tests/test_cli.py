"""The ``appliance`` command, run as a real subprocess against a real data directory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.models import identity_model

from appliance.demo import BREAST_CANCER
from appliance.registry import Registry
from appliance.security.crypto_store import is_encrypted


def run(*args: str, data_dir: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir)}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)  # the CLI uses the entry points
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def registry_snapshot(data_dir: Path) -> str:
    r = run("models", "list", "--json", data_dir=data_dir)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_models_add_records_version_with_hashes_and_signature(tmp_path):
    r = run("models", "add", str(BREAST_CANCER), "--name", "bc", "--by", "alice", "--json",
            data_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    record = json.loads(r.stdout)
    assert record["version"] == "1" and record["format"] == "onnx"
    assert record["created_by"] == "alice"
    assert record["files"][0]["size"] == BREAST_CANCER.stat().st_size
    stored = tmp_path / "artifacts" / "sha256" / record["digest"] / "breast_cancer.onnx"
    assert is_encrypted(stored)  # at rest; the plaintext only in memory:
    registry = Registry(tmp_path)
    try:
        plain = registry.model_source(registry.version("bc", "1")).read_bytes()
    finally:
        registry.close()
    assert plain == BREAST_CANCER.read_bytes()
    assert record["inputs"] == [{"name": "input", "datatype": "FP32", "shape": [-1, 30]}]


def test_models_add_numbers_versions_and_show_lists_them(tmp_path):
    for _ in range(2):
        assert run("models", "add", str(BREAST_CANCER), "--name", "bc",
                   data_dir=tmp_path).returncode == 0
    shown = json.loads(run("models", "show", "bc", "--json", data_dir=tmp_path).stdout)
    assert [v["version"] for v in shown["versions"]] == ["1", "2"]
    listed = json.loads(registry_snapshot(tmp_path))
    assert listed[0]["name"] == "bc" and listed[0]["versions"] == ["1", "2"]
    human = run("models", "show", "bc", data_dir=tmp_path).stdout
    assert "input  input: FP32 [-1, 30]" in human


@pytest.mark.parametrize("content", [b"", b"this is not a model at all", b"\x08\x07" * 40],
                         ids=["empty", "text", "garbage"])
def test_corrupt_model_file_is_refused_and_registry_unchanged(tmp_path, content):
    run("models", "add", str(BREAST_CANCER), "--name", "bc", data_dir=tmp_path)
    before = registry_snapshot(tmp_path)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(content)
    r = run("models", "add", str(bad), "--name", "bc", data_dir=tmp_path)
    assert r.returncode == 1
    # the import scan or the backend refuses it, naming the file either way
    assert "bad.onnx" in r.stderr and ("cannot load" in r.stderr or "refused" in r.stderr)
    assert registry_snapshot(tmp_path) == before
    assert not any((tmp_path / "artifacts" / ".staging").iterdir())


def test_unknown_format_and_missing_file_are_clear_errors(tmp_path):
    other = tmp_path / "model.pkl"
    other.write_bytes(b"\x80\x04")
    r = run("models", "add", str(other), "--name", "m", "--json", data_dir=tmp_path)
    assert r.returncode == 1 and ".onnx" in json.loads(r.stdout)["error"]
    r = run("models", "add", str(tmp_path / "nope.onnx"), "--name", "m", data_dir=tmp_path)
    assert r.returncode == 1 and "does not exist" in r.stderr


def test_bad_model_name_and_duplicate_version_are_refused(tmp_path):
    r = run("models", "add", str(BREAST_CANCER), "--name", "../etc", data_dir=tmp_path)
    assert r.returncode == 1 and "not valid" in r.stderr
    run("models", "add", str(BREAST_CANCER), "--name", "bc", "--version", "a", data_dir=tmp_path)
    r = run("models", "add", str(BREAST_CANCER), "--name", "bc", "--version", "a",
            data_dir=tmp_path)
    assert r.returncode == 1 and "already has a version 'a'" in r.stderr


def test_show_unknown_model_exits_1_naming_it(tmp_path):
    r = run("models", "show", "ghost", data_dir=tmp_path)
    assert r.returncode == 1 and "ghost" in r.stderr


def test_added_model_of_any_datatype_keeps_its_signature(tmp_path):
    from onnx import TensorProto
    path = identity_model(tmp_path / "u8.onnx", elem=TensorProto.UINT8)
    r = run("models", "add", str(path), "--name", "u8", "--json", data_dir=tmp_path)
    assert json.loads(r.stdout)["inputs"][0]["datatype"] == "UINT8"


def test_serve_on_a_busy_port_exits_non_zero_with_a_clear_message(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        r = run("serve", "--port", str(port), "--no-demo", data_dir=tmp_path, timeout=60)
    assert r.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in r.stderr and "--port" in r.stderr


def test_bad_config_file_is_a_clear_error(tmp_path):
    cfg = tmp_path / "appliance.toml"
    cfg.write_text("port = 'eighty'\n")
    env_cfg = run("--config", str(cfg), "serve", data_dir=tmp_path)
    assert env_cfg.returncode == 1 and "port" in env_cfg.stderr
