"""Hostile cases against the audit log (issue 9): a rewrite without the key and with it,
floods of bad tokens, and a disk that cannot be written. Real SQLite files, real Ed25519
keys, real servers, real subprocesses; after each case against a server it still answers
a normal request."""

from __future__ import annotations

import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import httpx
import msgspec
import pluggy
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from helpers import make_services, serve
from helpers.models import scale_model

from appliance.audit import (
    AuditLog,
    AuditSettings,
    Entry,
    InferenceAuditor,
    chain_hash,
    checkpoints_after,
    derive_signing_key,
    make_checkpoint,
    open_audit,
    open_log,
    parse_witness,
    verify,
)
from appliance.audit.checkpoints import key_id
from appliance.audit.losses import LossFile
from appliance.cli.tokens import mint_token
from appliance.errors import BadRequest
from appliance.packages.importer import import_model
from appliance.security.crypto_store import plugin_box_key

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


def old(minutes: float) -> str:
    return (datetime.now(UTC) - timedelta(minutes=minutes)).isoformat(timespec="microseconds")


def fill_old(log: AuditLog, n: int, minutes_ago: float) -> None:
    log.append_many([Entry("model.load", "ops", {"i": i}, old(minutes_ago - i * 0.01))
                     for i in range(n)])


def rewrite_from(log: AuditLog, first_seq: int, body: str = '{"model":"forged"}') -> None:
    """What an attacker with write access does: edit records, recompute every hash."""
    conn = sqlite3.connect(log.path, isolation_level=None)
    try:
        rows = conn.execute("SELECT seq, at, kind, actor, prev_hash FROM records WHERE seq >= ?"
                            " ORDER BY seq", [first_seq]).fetchall()
        prev = rows[0][4]
        conn.execute("BEGIN")
        for seq, at, kind, actor, _ in rows:
            digest = chain_hash(prev, seq, at, kind, actor, body)
            conn.execute("UPDATE records SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                         [body, prev, digest, seq])
            prev = digest
        conn.execute("COMMIT")
    finally:
        conn.close()


def run_sql(log: AuditLog, statement: str, args: list | None = None) -> None:
    conn = sqlite3.connect(log.path, isolation_level=None)
    try:
        conn.execute(statement, args or [])
    finally:
        conn.close()


def kinds(report) -> set[str]:
    return {p.kind for p in report.problems}


# -- finding 4: a rewrite without the key, and with it ---------------------------------


def test_deleted_checkpoints_and_recomputed_chain_fail_verify_by_the_cadence(tmp_path, key):
    with AuditLog(tmp_path, key) as log:
        fill_old(log, 20, minutes_ago=120)  # the log spans far more than the cadence
        make_checkpoint(log)
        assert verify(log, cadence_minutes=15).ok
        run_sql(log, "DELETE FROM checkpoints")
        rewrite_from(log, 5)
        assert verify(log).ok  # the chain alone cannot tell
        report = verify(log, cadence_minutes=15)
    assert not report.ok and report.first_bad_seq == 1
    assert kinds(report) == {"unsigned"} and report.checkpoints_checked == 0
    assert "records 1..20 are older than the checkpoint cadence" in report.summary()


def test_log_younger_than_the_cadence_verifies_with_no_checkpoint(tmp_path, key):
    with AuditLog(tmp_path, key) as log:
        fill_old(log, 5, minutes_ago=10)  # inside 15 min cadence + 5 min grace
        report = verify(log, cadence_minutes=15, grace_minutes=5)
        assert report.ok and report.checkpoints_checked == 0, report.summary()
        later = datetime.now(UTC) + timedelta(minutes=15)
        assert not verify(log, cadence_minutes=15, now=later).ok
        log.close(checkpoint=False)


def test_deleted_middle_checkpoint_breaks_the_checkpoint_chain(tmp_path, key):
    with AuditLog(tmp_path, key) as log:
        for i in range(3):
            fill_old(log, 4, minutes_ago=60 - i)
            make_checkpoint(log)
        numbers = [json.loads(cp["payload"])["n"] for cp in checkpoints_after(log)]
        assert numbers == [1, 2, 3]
        run_sql(log, "DELETE FROM checkpoints WHERE id = 2")
        report = verify(log, cadence_minutes=15)
    assert not report.ok and kinds(report) == {"checkpoint-missing"}
    assert report.first_bad_seq == 5  # after checkpoint 1 (size 4)
    assert "signed checkpoint(s) 2..2 were deleted" in report.summary()


def test_writer_that_stops_cleanly_leaves_nothing_unsigned(tmp_path, key):
    with AuditLog(tmp_path, key) as log:
        auditor = InferenceAuditor(log, batch_window_ms=10)
        auditor.start()
        auditor.record("bc", "1", "r", "c", "d", None, 1.0)
        auditor.close()
    # a short-lived process (the CLI) signs when its log closes
    with AuditLog(tmp_path, key) as log:
        log.append("audit.hold", "legal", {"reason": "case"})
    with AuditLog(tmp_path, key) as log:
        hour_later = datetime.now(UTC) + timedelta(hours=1)
        report = verify(log, cadence_minutes=15, now=hour_later)
        assert report.ok and report.signed_through == report.last_seq, report.summary()
        run_sql(log, "DELETE FROM checkpoints WHERE id = (SELECT MAX(id) FROM checkpoints)")
        report = verify(log, cadence_minutes=15, now=hour_later)
        assert kinds(report) == {"unsigned"}


def test_rewrite_by_someone_holding_the_signing_key_is_caught_by_the_witness(tmp_path, key):
    witness = tmp_path / "witness.jsonl"
    with AuditLog(tmp_path, key) as log:
        for i in range(3):
            fill_old(log, 5, minutes_ago=90 - i * 20)
            make_checkpoint(log)
        witness.write_text("".join(json.dumps(cp) + "\n" for cp in checkpoints_after(log)))
        # the attacker has the key: rewrite from seq 7, drop every checkpoint, re-sign
        run_sql(log, "DELETE FROM checkpoints")
        rewrite_from(log, 7)
        make_checkpoint(log)
        local = verify(log, cadence_minutes=15)
        assert local.ok, local.summary()  # locally it all holds
        witnessed = parse_witness(witness.read_text().splitlines())
        report = verify(log, cadence_minutes=15, witness=witnessed)
    assert not report.ok and "witness-mismatch" in kinds(report)
    assert report.first_bad_witness is not None
    assert (report.first_bad_witness["n"], report.first_bad_witness["size"]) == (2, 10)
    assert report.first_bad_seq == 6  # the witness vouches for 1..5 only
    assert report.witness_checked == 1


def test_forwarded_checkpoint_lines_are_a_witness_the_cli_checks(tmp_path):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    settings = msgspec.convert({"batch_window_ms": 20, "forward": [
        {"host": "127.0.0.1", "port": receiver.getsockname()[1]}]}, AuditSettings)
    runtime = open_audit(tmp_path, settings)  # the KeyStore key, as the CLI uses
    assert runtime is not None and runtime.auditor is not None
    runtime.auditor.record("bc", "1", "r1", "alice", "d" * 64, None, 0.3)
    runtime.close()
    lines = []
    try:
        while len(lines) < 5:
            lines.append(receiver.recv(65536).decode())
    finally:
        receiver.close()
    siem = tmp_path / "siem.log"
    siem.write_text("\n".join(lines) + "\n")  # every record, checkpoints among them
    assert len(parse_witness(lines)) == 2
    cli = [sys.executable, "-c", "import appliance.cli.audit; from appliance.cli import main;"
           " main()", "audit", "verify", "--witness", str(siem), "--json"]
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path)}
    r = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and json.loads(r.stdout)["witness_checked"] == 2, r.stderr
    with open_log(tmp_path) as log:
        rewrite_from(log, 2)
        run_sql(log, "DELETE FROM checkpoints")
        make_checkpoint(log)
    r = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=60)
    report = json.loads(r.stdout)
    assert r.returncode == 1 and report["first_bad_witness"]["n"] == 2, r.stdout
    assert report["first_bad_seq"] == 2  # the witness vouches for seq 1 only


def test_witness_file_without_checkpoints_or_with_broken_json_is_refused():
    assert parse_witness(["<13>1 - - - - inference [x] {}", "garbage"]) == []
    with pytest.raises(BadRequest, match="line 1"):
        parse_witness(['{"type":"audit.checkpoint", "size": '])
    with pytest.raises(BadRequest, match="needs n, size"):
        parse_witness(['{"type":"audit.checkpoint"}'])


class BoxKeyPlugin:
    def __init__(self, key: bytes) -> None:
        self.key = key

    @pluggy.HookimplMarker("appliance")
    def appliance_box_key(self, data_dir):
        return self.key


def test_checkpoint_signing_key_comes_from_the_box_key_hook(tmp_path, ort_plugin_manager):
    box_key = os.urandom(32)
    ort_plugin_manager.register(BoxKeyPlugin(box_key))
    provider = plugin_box_key(ort_plugin_manager, tmp_path)
    runtime = open_audit(tmp_path, AuditSettings(), box_key_provider=provider)
    assert runtime is not None
    runtime.close()
    assert not (tmp_path / "keys" / "audit.ed25519.pem").exists()  # never on the disk
    derived = derive_signing_key(box_key).public_key()
    with open_log(tmp_path, provider) as log:
        ids = {cp["key_id"] for cp in checkpoints_after(log)}
        assert ids == {key_id(derived)}
        assert verify(log).ok
    with AuditLog(tmp_path) as log:  # the file key cannot vouch for them
        assert kinds(verify(log)) == {"bad-checkpoint"}
        log.close(checkpoint=False)


# -- finding 6: a flood of bad tokens ----------------------------------------------------


def test_bad_token_flood_keeps_threads_bounded_and_every_failure_is_logged_or_counted(
        tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager, auth={"mode": "on"},
                             audit={"queue_max": 10, "batch_window_ms": 50})
    import_model(services.registry, services.catalog, scale_model(tmp_path / "m.onnx", 2),
                 name="m")
    server = serve(services)
    requests, peak = 1500, [0]
    baseline = threading.active_count()
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.is_set():
            peak[0] = max(peak[0], threading.active_count())
            time.sleep(0.002)

    def flood(count: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            for _ in range(count):
                # no body: a refused request leaves nothing unread on the connection
                r = client.get("/v2/models/m", headers={"Authorization": "Bearer not-a-token"})
                assert r.status_code == 401

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        floods = [threading.Thread(target=flood, args=(requests // 5,)) for _ in range(5)]
        for t in floods:
            t.start()
        for t in floods:
            t.join()
        sampling.set()
        sampler.join()
        token, _ = mint_token(tmp_path / "var", issuer="appliance-local",
                              audience="appliance", subject="ci", scopes=["models:infer"],
                              roles=[], ttl_s=60)
        r = httpx.post(f"{server.url}/v2/models/m/infer", json=BODY,
                       headers={"Authorization": f"Bearer {token}"}, timeout=30)
        assert r.status_code == 200, r.text  # the server still serves
        assert services.audit is not None and services.audit.writer is not None
        assert services.audit.writer.flush()
    finally:
        server.stop()
    # 5 flooding clients + the sampler: nothing per failure
    assert peak[0] <= baseline + 6 + 2, (baseline, peak[0])
    with AuditLog(tmp_path / "var", Ed25519PrivateKey.generate()) as log:
        logged = len(list(log.records(kinds=["auth.failure"])))
        counted = sum(g.data()["lost"] for g in log.records(kinds=["gap"])
                      if g.data().get("records") == "auth.failure")
        log.close(checkpoint=False)
    assert counted > 0 and logged + counted == requests, (logged, counted)


# -- finding 11: a disk that cannot be written -------------------------------------------

FULL_DISK = """
import json, logging, resource, signal, sys
from pathlib import Path
from appliance.audit import AuditSettings, open_audit
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (8192, 8192))
logging.basicConfig(level=logging.WARNING)
runtime = open_audit(Path(sys.argv[1]), AuditSettings(batch_window_ms=20))
for i in range(200):
    runtime.auditor.record("bc", "1", str(i), "c", "d", None, 1.0)
runtime.auditor.flush()
dropped = runtime.auditor.dropped
runtime.close()
print(json.dumps({"dropped": dropped}))
"""


def test_full_disk_start_serves_and_the_loss_count_survives_the_stop(tmp_path):
    """A real write failure, deterministic and without root tricks: RLIMIT_FSIZE makes
    every write past 8 KiB fail with EFBIG in the child (SQLite cannot even size its
    shared-memory file, as on a full disk), while the 8 KiB loss file reserved earlier
    is only overwritten in place."""
    runtime = open_audit(tmp_path, AuditSettings())  # made while there is room
    assert runtime is not None
    runtime.close()
    assert (tmp_path / "audit.losses").stat().st_size == 8192
    child = subprocess.run([sys.executable, "-c", FULL_DISK, str(tmp_path)],
                           capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert "cannot be opened for writing" in child.stderr and "serves anyway" in child.stderr
    assert json.loads(child.stdout.splitlines()[-1])["dropped"] == 200
    assert sum(int(v[0]) for v in LossFile(tmp_path).read().values()) == 200
    runtime = open_audit(tmp_path, AuditSettings())  # room again: the next writer reports
    assert runtime is not None
    runtime.close()
    with open_log(tmp_path) as log:
        gaps = [g.data() for g in log.records(kinds=["gap"])]
        assert [(g["reason"], g["records"], g["lost"]) for g in gaps] == [
            ("write-failed", "inference", 200)]
        assert verify(log, cadence_minutes=15).ok
    assert LossFile(tmp_path).read() == {}  # reported once, not again


def test_unopenable_audit_log_lets_the_server_serve_and_reports_the_count_later(
        tmp_path, ort_plugin_manager, caplog):
    data = tmp_path / "var"
    (data / "audit.db").mkdir(parents=True)  # SQLite cannot open it, not even as root
    services = make_services(data, ort_plugin_manager, audit={"batch_window_ms": 20})
    import_model(services.registry, services.catalog, scale_model(tmp_path / "m.onnx", 2),
                 name="m")
    assert "cannot be opened for writing" in caplog.text
    server = serve(services)
    try:
        for _ in range(3):
            r = httpx.post(f"{server.url}/v2/models/m/infer", json=BODY, timeout=30)
            assert r.status_code == 200, r.text
        assert services.audit is not None and services.audit.writer is not None
        writer = services.audit.writer
        assert writer.flush() and writer.dropped == 3
        shutil.rmtree(data / "audit.db")  # space is freed: the writer catches up
        r = httpx.post(f"{server.url}/v2/models/m/infer", json=BODY, timeout=30)
        assert r.status_code == 200
        assert writer.flush()
    finally:
        server.stop()  # the app owns the services and closes them
    with open_log(data) as log:
        gaps = [g.data() for g in log.records(kinds=["gap"])]
        assert [(g["reason"], g["lost"]) for g in gaps] == [("write-failed", 3)]
        assert len(list(log.records(kinds=["inference"]))) == 1
        assert verify(log).ok
