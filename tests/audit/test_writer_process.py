"""The audit writer process (audit/writer_process.py, audit/feeder.py): the default way
records reach the chain, and what happens when either side dies."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.audit import AuditLog, AuditSettings, InferenceAuditor, open_audit, verify
from appliance.audit.feeder import AuditFeeder


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def settings(**overrides: object) -> AuditSettings:
    return msgspec.convert({"batch_window_ms": 20, **overrides}, AuditSettings)


def kinds(data_dir: Path, key: Ed25519PrivateKey) -> list[str]:
    with AuditLog(data_dir, key) as log:
        out = [r.kind for r in log.records()]
        log.close(checkpoint=False)
    return out


def gone(pid: int, timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:  # a zombie (dead, not yet reaped by its parent: us) counts as gone
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            return True
        if state == "Z":
            return True
        time.sleep(0.05)
    return False


def test_records_are_written_by_a_writer_process_and_the_chain_verifies(tmp_path, key):
    runtime = open_audit(tmp_path, settings(per_model={"bc": {"store_inputs": True}}), key)
    assert runtime is not None and isinstance(runtime.writer, AuditFeeder)
    writer = runtime.writer
    assert writer.pid is not None and writer.pid != os.getpid()
    x = {"input": np.arange(4, dtype=np.float32).reshape(1, 4)}
    for i in range(50):
        assert writer.observe("bc", "1", f"r{i}", "alice", x, {"y": x}, 0.5)
    assert writer.record_event("auth.failure", "mallory", {"reason": "bad token"})
    assert writer.flush()
    assert writer.stats() == {"queued": 0, "written": 51, "dropped": 0}
    pid = writer.pid
    runtime.close()
    assert gone(pid)
    assert kinds(tmp_path, key) == (["writer-start"] + ["inference"] * 50
                                    + ["auth.failure", "writer-stop"])
    with AuditLog(tmp_path, key) as log:
        first = next(log.records(kinds=["inference"])).data()
        assert first["inputs"]["input"]["shape"] == [1, 4]  # stored inputs travel too
        assert verify(log).ok


def test_a_killed_writer_process_is_replaced_and_its_unclean_stop_is_recorded(tmp_path, key):
    runtime = open_audit(tmp_path, settings(), key)
    assert runtime is not None and isinstance(runtime.writer, AuditFeeder)
    writer = runtime.writer
    writer.record("bc", "1", "before", "c", "d", None, 1.0)
    assert writer.flush()
    first = writer.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert gone(first)
    for i in range(5):  # each either reaches the new writer or is counted: never silent
        writer.record("bc", "1", f"after{i}", "c", "d", None, 1.0)
    # a flush that reached the dying writer (its threads were still exiting) is not
    # confirmed; the next one is, by the new writer
    assert writer.flush() or writer.flush()
    assert writer.pid not in (None, first)
    runtime.close()
    with AuditLog(tmp_path, key) as log:
        records = list(log.records())
        gaps = [r.data() for r in records if r.kind == "gap"]
        assert verify(log).ok
    assert [r.kind for r in records].count("writer-start") == 2
    assert [g["reason"] for g in gaps][:1] == ["unclean-shutdown"]
    ids = [r.data()["request_id"] for r in records if r.kind == "inference"]
    lost = sum(g.get("lost", 0) for g in gaps if g["reason"] == "writer-died")
    assert ids[0] == "before" and len(ids) - 1 + lost == 5


def test_the_writer_process_ignores_sigterm_and_sigint_and_stops_when_told(tmp_path, key):
    runtime = open_audit(tmp_path, settings(), key)
    assert runtime is not None and isinstance(runtime.writer, AuditFeeder)
    pid = runtime.writer.pid
    assert pid is not None
    os.kill(pid, signal.SIGTERM)  # systemd's stop and a terminal's Ctrl-C reach the group
    os.kill(pid, signal.SIGINT)
    runtime.writer.record("bc", "1", "r", "c", "d", None, 1.0)
    assert runtime.writer.flush() and runtime.writer.pid == pid
    runtime.close()
    assert gone(pid)
    assert kinds(tmp_path, key)[-2:] == ["inference", "writer-stop"]


SERVER_DIES = """
import os, sys
from pathlib import Path
import msgspec
from appliance.audit import AuditSettings, open_audit
runtime = open_audit(Path(sys.argv[1]), msgspec.convert({"batch_window_ms": 20}, AuditSettings))
runtime.writer.record("bc", "1", "r1", "c", "d", None, 1.0)
assert runtime.writer.flush()
print(runtime.writer.pid, flush=True)
os._exit(0)  # no close: as a SIGKILL would leave it
"""


def test_a_vanished_serving_process_leaves_a_gap_record_and_a_clean_writer_stop(tmp_path):
    child = subprocess.run([sys.executable, "-c", SERVER_DIES, str(tmp_path)],
                           capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stderr
    assert gone(int(child.stdout.split()[-1]))  # the writer saw its stdin close and stopped
    from appliance.audit import open_log

    with open_log(tmp_path) as log:
        records = list(log.records())
        assert verify(log).ok
        log.close(checkpoint=False)
    assert [r.kind for r in records] == ["writer-start", "inference", "gap", "writer-stop"]
    assert records[2].data()["reason"] == "feeder-vanished"


def test_a_writer_process_that_cannot_start_falls_back_to_a_thread(tmp_path, key,
                                                                    monkeypatch, caplog):
    monkeypatch.setattr(sys, "executable", "/bin/false")  # no interpreter to start
    runtime = open_audit(tmp_path, settings(), key)
    assert runtime is not None and isinstance(runtime.writer, InferenceAuditor)
    assert "writing audit records from a thread of the server instead" in caplog.text
    runtime.writer.record("bc", "1", "r", "c", "d", None, 1.0)
    runtime.close()
    assert kinds(tmp_path, key) == ["writer-start", "inference", "writer-stop"]


def test_the_writer_process_log_lines_reach_the_server_log(tmp_path, key, caplog):
    (tmp_path / "audit.db").mkdir()  # SQLite cannot open it: the writer warns, in our log
    runtime = open_audit(tmp_path, settings(), key)
    assert runtime is not None and isinstance(runtime.writer, AuditFeeder)
    runtime.writer.record("bc", "1", "r", "c", "d", None, 1.0)
    assert runtime.writer.flush() and runtime.writer.dropped == 1
    runtime.close()
    assert "audit writer" in caplog.text and "records lost" in caplog.text
    assert json.dumps(runtime.writer.stats())  # still answers after the stop
