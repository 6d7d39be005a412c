"""Large packages stream: bounded memory for build and push, chunked encryption that
detects tampering, a progress bar only on a terminal, and a push killed mid-stream.

The large package is one ONNX variant whose 200 MiB initializer is embedded in the model
file; it is written in pieces (a ModelProto, then a second one holding only
``graph.initializer``: protobuf merges the two), so making it costs no memory either.
"""

from __future__ import annotations

import base64
import os
import pty
import select
import signal
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import onnx
import pytest
from helpers.models import scale_model
from onnx import TensorProto, helper, numpy_helper

from appliance.errors import InvalidModelFile
from appliance.packages import build_package, push_package, staging
from appliance.packages import weightless as weightless_module
from appliance.packages.manifest import toml_text
from appliance.packages.progress import SILENT, TerminalProgress, progress_for
from appliance.registry import ArtifactStore, Registry
from appliance.security import crypto_store
from appliance.security.crypto_reader import EncryptedReader
from appliance.security.crypto_store import (
    HEADER_SPACE,
    TAG,
    decrypt_into_buffer,
    decrypt_to_memory,
    encrypt_file,
    plain_sha256,
)
from appliance.security.scan.onnx_wire import read_skeleton
from appliance.security.scan.readers import BufferReader, FileReader

CLI = "import appliance.cli.package; from appliance.cli import main; main()"
BIG_MB = 200
KEY = bytes(range(32))


def _field(number: int, length: int) -> bytes:
    from appliance.security.scan.onnx_wire import encode_varint

    return encode_varint(number << 3 | 2) + encode_varint(length)


def big_onnx(path: Path, weight_bytes: int) -> Path:
    """y = 2x + 0 * sum(big), ``big`` holding ``weight_bytes`` of FP32, written in 8 MiB
    pieces."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 2])
    k = numpy_helper.from_array(np.array([2.0], dtype=np.float32), "k")
    zero = numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero")
    nodes = [helper.make_node("ReduceSum", ["big"], ["s"], keepdims=0),
             helper.make_node("Mul", ["s", "zero"], ["z"]),
             helper.make_node("Mul", ["x", "k"], ["xk"]),
             helper.make_node("Add", ["xk", "z"], ["y"])]
    model = helper.make_model(helper.make_graph(nodes, "big", [x], [y], initializer=[k, zero]),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    head = TensorProto(name="big", dims=[weight_bytes // 4], data_type=TensorProto.FLOAT)
    tensor = head.SerializeToString() + _field(9, weight_bytes)
    graph = _field(5, len(tensor) + weight_bytes)
    piece = np.full((8 << 20) // 4, 0.5, np.float32).tobytes()
    with path.open("wb") as f:
        f.write(model.SerializeToString())
        f.write(_field(7, len(graph) + len(tensor) + weight_bytes) + graph + tensor)
        for at in range(0, weight_bytes, len(piece)):
            f.write(piece[:weight_bytes - at])
    return path


def manifest(name: str, primary: str = "model.onnx") -> str:
    return toml_text({
        "name": name, "version": "1",
        "variants": [{"precision": "fp32", "format": "onnx", "primary": primary,
                      "files": [{"path": primary}]}],
        "inputs": [{"name": "x", "datatype": "FP32", "shape": [-1, 2]}],
        "outputs": [{"name": "y", "datatype": "FP32", "shape": [-1, 2]}],
        "tags": {"owner": "ml@example.com", "sensitivity": "internal", "impact": "low"}})


def package(root: Path, name: str, make) -> Path:
    src = root / f"{name}-src"
    src.mkdir(parents=True)
    make(src / "model.onnx")
    (src / "model.toml").write_text(manifest(name))
    build_package(src, root / f"{name}.tar")
    return root / f"{name}.tar"


@pytest.fixture(scope="module")
def packages(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("streaming")
    return {"big": package(root, "big", lambda p: big_onnx(p, BIG_MB << 20)),
            "small": package(root, "small", lambda p: scale_model(p, 2.0))}


def cli_env(data_dir: Path) -> dict[str, str]:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir)}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)  # the CLI uses the entry points
    return env


def peak_rss_mb(args: list[str], data_dir: Path) -> float:
    """The peak RSS of one CLI command, from the kernel (``wait4``); it must succeed."""
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], env=cli_env(data_dir),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    with proc.stderr:
        err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    assert proc.returncode == 0, err.decode()
    return usage.ru_maxrss / 1024


# -- memory ----------------------------------------------------------------------------

def test_pushing_a_200_mb_package_takes_under_100_mb_more_than_a_tiny_one(tmp_path, packages):
    tiny = peak_rss_mb(["models", "push", str(packages["small"])], tmp_path / "a")
    big = peak_rss_mb(["models", "push", str(packages["big"])], tmp_path / "b")
    assert big - tiny < 100, f"push of {BIG_MB} MiB peaked at {big:.0f} MiB, a tiny " \
                             f"package at {tiny:.0f} MiB"
    registry = Registry(tmp_path / "b")
    try:
        record = registry.version("big", "1")
        assert [s.name for s in record.inputs] == ["x"]  # the weights are not an input
        variant = record.all_variants()[0]
        assert registry.store.verify(variant.digest, variant.files) == []
    finally:
        registry.close()


def test_building_a_200_mb_package_stays_near_the_commands_baseline(tmp_path, packages):
    src = packages["big"].parent / "big-src"
    base = peak_rss_mb(["models", "list"], tmp_path / "var")
    build = peak_rss_mb(["package", "build", str(src), "-o", str(tmp_path / "b.tar")],
                        tmp_path / "var")
    assert build - base < 50
    assert (tmp_path / "b.tar").read_bytes()[:512] == packages["big"].read_bytes()[:512]


def test_skeleton_leaves_tensor_data_out_and_says_where_it_lies(tmp_path):
    path = big_onnx(tmp_path / "m.onnx", 4 << 20)
    with FileReader(path) as reader:
        skeleton = read_skeleton(reader)
    assert len(skeleton.model) < 4096
    model = onnx.ModelProto()
    model.ParseFromString(skeleton.model)
    assert [t.name for t in model.graph.initializer] == ["k", "zero", "big"]
    assert all(not t.raw_data for t in model.graph.initializer)
    offset, length = skeleton.tensors[-1].raw
    assert length == 4 << 20
    with path.open("rb") as f:
        f.seek(offset)
        assert np.frombuffer(f.read(16), np.float32).tolist() == [0.5] * 4
    full = onnx.load(path)
    for t in full.graph.initializer:
        t.ClearField("raw_data")
    assert model == full  # nothing but the data is missing


def test_weightless_load_check_records_what_a_full_load_reports(tmp_path, registry, catalog,
                                                                 monkeypatch):
    monkeypatch.setattr(staging, "LOAD_CHECK_BYTES", 0)
    twins = []
    real = weightless_module.weightless_twin
    monkeypatch.setattr(staging, "weightless_twin",
                        lambda reader: twins.append(real(reader)) or twins[-1])
    src = tmp_path / "src"
    src.mkdir()
    big_onnx(src / "model.onnx", 1 << 20)
    (src / "model.toml").write_text(manifest("twin"))
    build_package(src, tmp_path / "twin.tar")
    record = push_package(registry, catalog, tmp_path / "twin.tar", actor="t")
    assert twins and twins[0] is not None and twins[0][1] == {"big"}
    _, loaded = catalog.load(registry.model_source(record.all_variants()[0]))
    assert (record.inputs, record.outputs) == (loaded.inputs, loaded.outputs)
    assert loaded.predict({"x": np.ones((1, 2), np.float32)})["y"].tolist() == [[2.0, 2.0]]


def test_weightless_twin_refuses_weights_shorter_than_declared(tmp_path):
    path = big_onnx(tmp_path / "m.onnx", 1 << 20)
    data = bytearray(path.read_bytes())
    model = onnx.ModelProto()
    model.ParseFromString(bytes(data))
    big = model.graph.initializer[-1]
    del big.dims[:]
    big.dims.append((2 << 20) // 4)  # declares 2 MiB, holds 1 MiB
    with pytest.raises(InvalidModelFile, match="declares 2097152 bytes"):
        weightless_module.weightless_twin(BufferReader(model.SerializeToString()))


# -- chunked encryption ------------------------------------------------------------------

#: a file encrypted by the appliance before this change (the format is unchanged: the
#: STREAM construction, 1 MiB chunks), with the box key ``bytes(range(32))``
OLD_BLOB = (
    "eNpzDPBx9XM25GJgYP5SrZScn1eSmleiZKUAZGeU5mUDWYYGJham5mY6CkrJmQUZqUVAISVH12BdI1MzXXdnX9"
    "3gkCBXR18loHxxRiJQECRvlGSWlGRommScmmxokmZokZhkaWqRYmqcmmpqmppklJJibG6clpZmmWKRZmlhapKc"
    "aARUkmhsYJpkagnExmDTMqtSQdabmNcCeeVFiQVgZyXmpINdALQJaDtIYXZqJUikwNM4r7wyz6fYJdDXJ6gsKK"
    "eqICwgO8I1NT/DI03fNKvQtyrP0yDPK8o0z9Isx9vSr6LE3SfSMCczIiCtNCQkD2xUZgrIKBOTJANLw8RkS8M0"
    "c9MU81SQVF5+XjLIPUr+psYpqVGeWdmZJlmeZWWlSrW1CqNgFAxN8GqSWfVchjwBF7dYkYhjB0o5BWZM62pv6F"
    "+18ErastYcqQfGeUuuVFomr/0kEC8a87furt22nu8f0uYFntsi0h4d1riqluVlDt+cQsdnZxcGVu7XqWZ98Gem"
    "8z+Z1+tiHPeG7wyQ5wq/V5AzxzCbXf9yRtBpkc4pzSmNp3Mc5r5m9lO2qzL/7cH0RDdiysLtnRc5ywIOvpV0Ov"
    "f6/6O671af6//72Mn+zhT8CwDF2QUt")
OLD_PLAIN = b"weights written by the appliance before issue 11\n" * 3


def test_blobs_encrypted_before_this_change_still_decrypt(tmp_path):
    path = tmp_path / "old"
    path.write_bytes(zlib.decompress(base64.b64decode(OLD_BLOB)))
    assert decrypt_to_memory(path, KEY) == OLD_PLAIN
    with EncryptedReader(path, KEY) as reader:
        assert reader.read(0, reader.size) == OLD_PLAIN


@pytest.fixture
def sealed(tmp_path) -> tuple[Path, bytes]:
    """A 3.5-chunk plaintext, encrypted: (path, plaintext)."""
    plain = np.random.default_rng(7).bytes(crypto_store.CHUNK * 3 + crypto_store.CHUNK // 2)
    (tmp_path / "plain").write_bytes(plain)
    encrypt_file(tmp_path / "plain", tmp_path / "sealed", KEY)
    return tmp_path / "sealed", plain


def chunk_at(i: int) -> int:
    return HEADER_SPACE + i * (crypto_store.CHUNK + TAG)


def test_chunked_encryption_round_trips_whole_and_by_range(sealed, monkeypatch):
    path, plain = sealed
    assert decrypt_to_memory(path, KEY) == plain  # under FILL_IN_PLACE: chunks joined
    monkeypatch.setattr(crypto_store, "FILL_IN_PLACE", 1)
    filled = decrypt_to_memory(path, KEY)
    assert type(filled) is bytes and filled == plain and hash(filled) == hash(plain)
    assert bytes(decrypt_into_buffer(path, KEY)) == plain
    with EncryptedReader(path, KEY) as reader:
        assert reader.size == len(plain)
        for at, n in ((0, 10), (crypto_store.CHUNK - 3, 7), (len(plain) - 5, 5),
                      (12345, 2 * crypto_store.CHUNK + 17)):
            assert reader.read(at, n) == plain[at:at + n]
        assert reader.read(len(plain) - 2, 10) == plain[-2:]


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    size = crypto_store.CHUNK + TAG
    if how == "flip":
        data[chunk_at(1) + 100] ^= 1
    elif how == "truncate":
        del data[chunk_at(3) + 10:]
    elif how == "drop-last-chunk":
        del data[chunk_at(3):]
    elif how == "swap-chunks":
        a, b = chunk_at(0), chunk_at(1)
        data[a:a + size], data[b:b + size] = data[b:b + size], data[a:a + size]
    elif how == "append":
        data += b"\0" * 16
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("how", ["flip", "truncate", "drop-last-chunk", "swap-chunks",
                                 "append"])
def test_tampered_truncated_or_reordered_chunks_are_refused(sealed, how):
    path, _ = sealed
    _damage(path, how)
    for decrypt in (decrypt_to_memory, decrypt_into_buffer, plain_sha256):
        with pytest.raises(InvalidModelFile):
            decrypt(path, KEY)
    with pytest.raises(InvalidModelFile), EncryptedReader(path, KEY) as reader:
        reader.read(0, reader.size)


def test_encrypted_reader_refuses_a_swapped_file(sealed):
    path, _ = sealed
    with pytest.raises(InvalidModelFile, match="swapped"):
        EncryptedReader(path, KEY, expected_sha256="0" * 64)


# -- progress ----------------------------------------------------------------------------

def test_progress_is_silent_off_a_terminal_and_with_json(tmp_path):
    with (tmp_path / "log").open("w") as stream:
        assert progress_for(False, stream) is SILENT
    master, slave = pty.openpty()
    try:
        with os.fdopen(slave, "w", closefd=False) as tty:
            assert progress_for(True, tty) is SILENT
            shown = progress_for(False, tty)
            assert isinstance(shown, TerminalProgress)
            shown.close()
    finally:
        os.close(master)
        os.close(slave)


def run_on_pty(args: list[str], data_dir: Path) -> tuple[int, str, str]:
    """Run the CLI with stderr on a pseudo-terminal: (exit code, stdout, what the
    terminal showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", CLI, *args], env=cli_env(data_dir),
                            stdout=subprocess.PIPE, stderr=slave, text=True)
    os.close(slave)
    shown = b""
    while True:
        ready, _, _ = select.select([master], [], [], 30)
        try:
            data = os.read(master, 65536) if ready else b""
        except OSError:  # the pty closes when the process exits
            data = b""
        if not data:
            break
        shown += data
    os.close(master)
    out, _ = proc.communicate(timeout=30)
    return proc.returncode, out, shown.decode(errors="replace")


def test_push_shows_a_progress_bar_on_a_terminal_unless_json(tmp_path, packages):
    code, out, shown = run_on_pty(["models", "push", str(packages["small"])], tmp_path / "a")
    assert code == 0 and "pushed small" in out
    assert "extracting" in shown and "staging" in shown and "100%" in shown
    code, out, shown = run_on_pty(["models", "push", str(packages["small"]), "--json"],
                                  tmp_path / "b")
    assert code == 0 and '"package_digest"' in out
    assert "extracting" not in shown and "%" not in shown
    r = subprocess.run([sys.executable, "-c", CLI, "models", "push", str(packages["small"])],
                       env=cli_env(tmp_path / "c"), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "extracting" not in r.stderr and "%" not in r.stderr


# -- a push killed mid-stream ------------------------------------------------------------

def staged_bytes(staging: Path) -> int:
    return sum(f.stat().st_size for f in staging.rglob("*") if f.is_file()) \
        if staging.is_dir() else 0


def test_push_killed_mid_stream_records_nothing_and_the_next_push_cleans_up(tmp_path,
                                                                            packages):
    var = tmp_path / "var"
    staging = var / "artifacts" / ".staging"
    proc = subprocess.Popen([sys.executable, "-c", CLI, "models", "push",
                             str(packages["big"])], env=cli_env(var),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while proc.poll() is None and staged_bytes(staging) < 50 << 20:  # mid-extraction
        assert time.monotonic() < deadline
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    left = sorted(p.name for p in staging.iterdir())
    assert any(name.startswith("pkg-") for name in left), left  # what the kill left
    registry = Registry(var)
    try:
        assert registry.models() == []
    finally:
        registry.close()
    r = subprocess.run([sys.executable, "-c", CLI, "models", "push", str(packages["small"])],
                       env=cli_env(var), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert list(staging.iterdir()) == []  # the next push removed the leftovers
    registry = Registry(var)
    try:
        assert [m.name for m in registry.models()] == ["small"]
    finally:
        registry.close()


def test_clean_staging_keeps_a_live_push_and_removes_a_dead_ones(tmp_path):
    store = ArtifactStore(tmp_path / "artifacts")
    live = store.staging_dir("pkg-")
    (live / "model.onnx").write_bytes(b"x")
    dead = store.staging / "pkg-dead"  # left by a process that died (no lease held)
    dead.mkdir()
    (store.staging / "pkg-dead.lock").touch()
    (store.staging / "stage-orphan.lock").touch()
    ArtifactStore(tmp_path / "artifacts").clean_staging()  # another process starting
    assert sorted(p.name for p in store.staging.iterdir()) == sorted(
        [live.name, live.name + ".lock"])
    store.discard(live)
    assert list(store.staging.iterdir()) == []


def test_weightless_source_reads_only_the_twin(tmp_path):
    source = weightless_module.WeightlessSource(tmp_path / "m.onnx", "onnx", twin=b"graph")
    assert source.read_bytes() == b"graph" and source.encrypted
    with pytest.raises(InvalidModelFile):
        source.read_file_bytes("weights.bin")
    with pytest.raises(InvalidModelFile):
        source.read_file_bytes("../etc")
