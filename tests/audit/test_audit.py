"""The tamper-evident audit log: chain, checkpoints, inference batching, retention,
export formats and live SIEM forwarding, against real SQLite, real Ed25519 keys, real
subprocesses and real sockets on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import json
import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.x509.oid import NameOID

from appliance.audit import (
    GENESIS,
    AuditLog,
    AuditSettings,
    Entry,
    InferenceAuditor,
    ModelAudit,
    SyslogForwarder,
    active_holds,
    canonical_json,
    chain_hash,
    export,
    make_checkpoint,
    open_audit,
    place_hold,
    prune,
    release_holds,
    tensor_digest,
    verify,
)
from appliance.audit.export import to_cef
from appliance.errors import Conflict

# -- helpers -------------------------------------------------------------------------


@pytest.fixture
def key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def log(tmp_path, key):
    with AuditLog(tmp_path, key) as audit_log:
        yield audit_log


def fill(log: AuditLog, n: int = 10) -> None:
    log.append_many([Entry("model.load", f"user{i}", {"model": "bc", "i": i})
                     for i in range(n)])


def sql(log: AuditLog, *statements: tuple[str, list]) -> None:
    """Tamper with the file the way an attacker with write access would: plain SQL."""
    conn = sqlite3.connect(log.path, isolation_level=None)
    try:
        conn.execute("BEGIN")
        for statement, args in statements:
            conn.execute(statement, args)
        conn.execute("COMMIT")
    finally:
        conn.close()


def rows(log: AuditLog) -> list[tuple]:
    conn = sqlite3.connect(log.path)
    try:
        return conn.execute("SELECT seq, at, kind, actor, body, prev_hash, hash FROM records "
                            "ORDER BY seq").fetchall()
    finally:
        conn.close()


def problem_kinds(report) -> set[str]:
    return {p.kind for p in report.problems}


# -- the chain -----------------------------------------------------------------------


def test_appended_records_form_a_chain_anyone_can_recompute(log):
    first = log.append("model.promote", "alice", {"model": "bc", "to": "production"})
    seqs = log.append_many([Entry("auth.failure", "-", {"ip": "10.0.0.9", "é": "ü"}),
                            Entry("config.change", "bob", {"key": "port", "new": 8080})])
    assert (first, seqs) == (1, [2, 3])
    prev = GENESIS
    for seq, at, kind, actor, body, prev_hash, digest in rows(log):
        # the documented rule, recomputed with the standard library only
        envelope = json.dumps({"seq": seq, "at": at, "kind": kind, "actor": actor,
                               "body": json.loads(body)}, sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False).encode()
        assert body == json.dumps(json.loads(body), sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False)
        assert prev_hash == prev
        assert digest == hashlib.sha256(prev.encode() + envelope).hexdigest()
        assert digest == chain_hash(prev, seq, at, kind, actor, body)
        prev = digest
    report = verify(log)
    assert report.ok and report.records_checked == 3 and report.first_bad_seq is None


def test_canonical_json_sorts_keys_without_spaces():
    assert canonical_json({"b": [1, {"d": 1, "c": "é"}], "a": None}) == \
        '{"a":null,"b":[1,{"c":"é","d":1}]}'.encode()


def test_edited_record_is_named_by_verify(log):
    fill(log)
    sql(log, ("UPDATE records SET body = ? WHERE seq = 5", ['{"model":"other"}']))
    report = verify(log)
    assert not report.ok and report.first_bad_seq == 5
    assert problem_kinds(report) == {"edited"}


def test_deleted_record_is_named_by_verify(log):
    fill(log)
    sql(log, ("DELETE FROM records WHERE seq = 4", []))
    report = verify(log)
    assert report.first_bad_seq == 4 and "missing" in problem_kinds(report)


def test_inserted_record_is_named_and_a_well_forged_one_breaks_the_next(log):
    fill(log)
    original = rows(log)
    shift = [("UPDATE records SET seq = -seq WHERE seq >= 4", []),
             ("UPDATE records SET seq = 1 - seq WHERE seq < 0", [])]
    at = original[2][1]
    forged_body = '{"model":"bc","i":99}'
    insert = "INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?)"
    sql(log, *shift, (insert, [4, at, "model.load", "mallory", forged_body, original[2][6],
                               "ab" * 32]))
    report = verify(log)
    assert report.first_bad_seq == 4 and "edited" in problem_kinds(report)
    # with a correct hash the inserted row passes, but the row after it no longer chains
    sql(log, ("UPDATE records SET hash = ? WHERE seq = 4",
              [chain_hash(original[2][6], 4, at, "model.load", "mallory", forged_body)]))
    report = verify(log)
    assert report.first_bad_seq == 5 and "out-of-chain" in problem_kinds(report)


def test_reordered_records_are_named_by_verify(log):
    fill(log)
    by_seq = {r[0]: r for r in rows(log)}
    update = ("UPDATE records SET at = ?, kind = ?, actor = ?, body = ?, prev_hash = ?, "
              "hash = ? WHERE seq = ?")
    sql(log, (update, [*by_seq[7][1:], 3]), (update, [*by_seq[3][1:], 7]))
    report = verify(log)
    assert report.first_bad_seq == 3 and "out-of-chain" in problem_kinds(report)


def test_truncation_after_a_checkpoint_is_detected(log):
    fill(log)
    checkpoint = make_checkpoint(log)
    assert checkpoint.size == 10
    assert make_checkpoint(log).id == checkpoint.id  # nothing new: no new row
    sql(log, ("DELETE FROM records WHERE seq >= 8", []))
    report = verify(log)
    assert report.first_bad_seq == 8 and problem_kinds(report) == {"truncated"}
    assert "records 8..10 are gone" in report.summary()


def test_rewritten_tail_with_fresh_hashes_is_caught_by_the_checkpoint(log):
    fill(log, 6)
    make_checkpoint(log)
    fill(log, 4)
    make_checkpoint(log)
    # rewrite from seq 8 on, recomputing every hash: the chain alone looks intact
    prev = rows(log)[6][6]
    for seq, at, kind, actor, _body, _prev, _hash in rows(log)[7:]:
        body = '{"model":"rewritten"}'
        digest = chain_hash(prev, seq, at, kind, actor, body)
        sql(log, ("UPDATE records SET body = ?, prev_hash = ?, hash = ? WHERE seq = ?",
                  [body, prev, digest, seq]))
        prev = digest
    report = verify(log)
    assert problem_kinds(report) == {"rewritten"}
    assert report.first_bad_seq == 7  # after the last checkpoint that still matches


def test_forged_checkpoint_signature_is_detected(log):
    fill(log)
    make_checkpoint(log)
    forger = Ed25519PrivateKey.generate()
    payload = canonical_json({"size": 10, "head_hash": "f" * 64, "at": "2030-01-01"})
    signature = __import__("base64").b64encode(forger.sign(payload)).decode()
    sql(log, ("UPDATE checkpoints SET head_hash = ?, payload = ?, signature = ?, at = ?",
              ["f" * 64, payload.decode(), signature, "2030-01-01"]))
    report = verify(log)
    assert not report.ok and report.first_bad_seq == 10
    assert problem_kinds(report) == {"bad-checkpoint"}


def test_sinks_see_each_commit_and_a_failing_sink_does_not_fail_the_append(log):
    seen: list[list[int]] = []
    log.add_sink(lambda records: seen.append([r.seq for r in records]))
    log.add_sink(lambda records: 1 / 0)
    fill(log, 3)
    log.append("model.unload", "ops", {"model": "bc"})
    assert seen == [[1, 2, 3], [4]]


# -- inference records ---------------------------------------------------------------


def test_tensor_digest_depends_on_values_names_and_types_not_on_layout_or_order():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = np.array([b"x", b"yz"], dtype=object)
    digest = tensor_digest({"a": a, "b": b})
    assert digest == tensor_digest({"b": b, "a": np.asfortranarray(a)})
    assert digest == tensor_digest({"a": a.astype(">f4"), "b": b})
    assert digest != tensor_digest({"a": a.astype(np.float64), "b": b})
    assert digest != tensor_digest({"a": a.reshape(3, 2), "b": b})
    assert digest != tensor_digest({"c": a, "b": b})
    assert digest != tensor_digest({"a": a + 1, "b": b})
    assert len(digest) == 64


def test_inference_records_are_batched_into_few_transactions(log):
    commits: list[int] = []
    log.add_sink(lambda records: commits.append(len(records)))
    auditor = InferenceAuditor(log, batch_window_ms=60_000, batch_size=100)
    auditor.start()
    for i in range(250):
        assert auditor.record("bc", "1", f"r{i}", "alice", "d" * 64, [1], 0.5)
    assert auditor.flush()
    auditor.close()
    inference = [r for r in log.records(kinds=["inference"])]
    assert [r.data()["request_id"] for r in inference] == [f"r{i}" for i in range(250)]
    batches = commits[1:-1]  # between writer-start and writer-stop
    assert sum(batches) == 250 and 3 <= len(batches) <= 10 and max(batches) <= 100
    assert verify(log).ok


def test_inference_records_are_written_within_the_batch_window(log):
    auditor = InferenceAuditor(log, batch_window_ms=50)
    auditor.start()
    try:
        auditor.observe("bc", "2", "req-1", "svc", {"x": np.ones((1, 30), np.float32)},
                        {"p": np.array([[0.2, 0.8]])}, 1.25, {"backend": "onnxruntime"})
        deadline = time.monotonic() + 5
        while not list(log.records(kinds=["inference"])) and time.monotonic() < deadline:
            time.sleep(0.02)
        (record,) = log.records(kinds=["inference"])
    finally:
        auditor.close()
    body = record.data()
    assert body["input_digest"] == tensor_digest({"x": np.ones((1, 30), np.float32)})
    assert body["routing"] == {"backend": "onnxruntime"} and record.actor == "svc"


def test_per_model_settings_store_inputs_and_argmax_summary(log):
    settings = msgspec.convert({"per_model": {"bc": {"store_inputs": True,
                                                     "summary": "argmax:p"}}}, AuditSettings)
    auditor = InferenceAuditor(log, per_model=settings.per_model)
    auditor.start()
    x = np.array([[1.5, -2.0]], dtype=np.float32)
    auditor.observe("bc", "1", "r", "c", {"x": x}, {"p": np.array([[0.1, 0.7, 0.2]])}, 2.0)
    auditor.observe("other", "1", "r", "c", {"x": x}, {"p": np.array([[0.9, 0.1]])}, 2.0)
    auditor.close()
    bc, other = (r.data() for r in log.records(kinds=["inference"]))
    assert bc["output_summary"] == [1]
    stored = bc["inputs"]["x"]
    assert stored["datatype"] == "FP32" and stored["shape"] == [1, 2]
    raw = __import__("base64").b64decode(stored["data"])
    assert np.frombuffer(raw, "<f4").tolist() == [1.5, -2.0]
    assert other["output_summary"] is None and "inputs" not in other


def test_observe_never_raises_and_reports_what_it_could_not_record(log):
    auditor = InferenceAuditor(log, per_model={"bc": ModelAudit(summary="argmax:absent")})
    auditor.start()
    assert not auditor.observe("bc", "1", "r", "c", {"x": "not an array"}, {}, 1.0)
    assert auditor.observe("bc", "1", "r2", "c", {"x": np.zeros(2)}, {"p": np.zeros(2)}, 1.0)
    auditor.close()
    (gap,) = (r.data() for r in log.records(kinds=["gap"]))
    assert gap["reason"] == "observe-failed" and gap["lost"] == 1
    (record,) = (r.data() for r in log.records(kinds=["inference"]))
    assert record["request_id"] == "r2" and record["output_summary"] is None


def test_bad_audit_settings_are_refused():
    with pytest.raises(msgspec.ValidationError, match="summary"):
        msgspec.convert({"per_model": {"bc": {"summary": "max:p"}}}, AuditSettings)
    with pytest.raises(msgspec.ValidationError, match="transport"):
        msgspec.convert({"forward": [{"host": "h", "transport": "smoke"}]}, AuditSettings)


def test_full_queue_never_blocks_drops_are_counted_and_a_gap_record_written(log):
    auditor = InferenceAuditor(log, batch_window_ms=10, queue_max=10)
    auditor.start()
    blocker = sqlite3.connect(log.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # the writer cannot commit until this ends
    try:
        slowest = 0.0
        started = time.perf_counter()
        for i in range(1000):
            t0 = time.perf_counter()
            auditor.record("bc", "1", f"r{i}", "c", "d", None, 1.0)
            slowest = max(slowest, time.perf_counter() - t0)
        total = time.perf_counter() - started
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert auditor.flush()
    auditor.close()
    assert total < 0.1 and slowest < 0.01, (total, slowest)
    written = len(list(log.records(kinds=["inference"])))
    assert auditor.dropped >= 900 and written + auditor.dropped == 1000
    gaps = [r.data() for r in log.records(kinds=["gap"])]
    assert sum(g["lost"] for g in gaps) == auditor.dropped
    assert all(g["reason"] == "queue-full" and g["first_lost_at"] <= g["last_lost_at"]
               for g in gaps)
    assert verify(log).ok


CRASHING_WRITER = """
import sys, time
from pathlib import Path
from appliance.audit import AuditLog, InferenceAuditor
auditor = InferenceAuditor(AuditLog(Path(sys.argv[1])), batch_window_ms=20)
auditor.start()
for i in range(5):
    auditor.record("bc", "1", str(i), "c", "d", None, 1.0)
auditor.flush()
print("ready", flush=True)
time.sleep(60)
"""


def test_killed_writer_leaves_a_gap_record_on_the_next_start(tmp_path, key):
    child = subprocess.Popen([sys.executable, "-c", CRASHING_WRITER, str(tmp_path)],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait(10)
        child.stdout.close()
    with AuditLog(tmp_path, key) as log:
        last = log.last()
        assert last is not None and last.kind == "inference"
        auditor = InferenceAuditor(log)
        auditor.start()
        auditor.close()
        kinds = [r.kind for r in log.records()]
        assert kinds == ["writer-start"] + ["inference"] * 5 + ["gap", "writer-start",
                                                                 "writer-stop"]
        (gap,) = (r.data() for r in log.records(kinds=["gap"]))
        assert gap["reason"] == "unclean-shutdown" and gap["after_seq"] == last.seq
        assert gap["after_at"] == last.at and gap["max_lost_window_ms"] == 20
        # a clean stop leaves nothing to report on the next start
        again = InferenceAuditor(log)
        again.start()
        again.close()
        assert len(list(log.records(kinds=["gap"]))) == 1
        assert verify(log).ok


# -- retention -----------------------------------------------------------------------


def test_prune_is_refused_under_minimum_retention_and_hold_and_verify_holds_after(log):
    log.append_many([Entry("model.load", "ops", {"i": i}, f"2019-0{i + 1}-01T00:00:00.000000"
                                                          "+00:00") for i in range(5)])
    log.append("model.load", "ops", {"i": 5})
    make_checkpoint(log)
    with pytest.raises(Conflict, match="minimum retention"):
        prune(log, datetime.now(UTC) - timedelta(days=1), by="ops", reason="space")
    place_hold(log, "legal", "case 7")
    short = timedelta(days=30)
    with pytest.raises(Conflict, match="legal hold by legal"):
        prune(log, datetime(2020, 1, 1, tzinfo=UTC), by="ops", reason="space",
              min_retention=short)
    assert [h.reason for h in active_holds(log)] == ["case 7"]
    release_holds(log, "legal")
    result = prune(log, datetime(2020, 1, 1, tzinfo=UTC), by="ops", reason="expired",
                   min_retention=short)
    assert (result.pruned_through_seq, result.records_pruned) == (5, 5)
    report = verify(log)
    assert report.ok and report.tombstone_seq == 5 and report.first_seq == 6, report.summary()
    kinds = [r.kind for r in log.records()]
    assert kinds == ["model.load", "audit.hold", "audit.release", "audit.prune"]
    log.append("model.load", "ops", {"after": "prune"})
    make_checkpoint(log)
    assert verify(log).ok
    sql(log, ("DELETE FROM records WHERE seq = 6", []))  # the tombstone vouches for 1..5 only
    assert verify(log).first_bad_seq == 6


def test_prune_refuses_a_broken_chain(log):
    log.append_many([Entry("model.load", "ops", {"i": i}, "2019-01-01T00:00:00.000000+00:00")
                     for i in range(3)])
    sql(log, ("UPDATE records SET actor = 'x' WHERE seq = 2", []))
    with pytest.raises(Conflict, match="first bad seq 2"):
        prune(log, datetime(2020, 1, 1, tzinfo=UTC), by="ops", reason="r",
              min_retention=timedelta(0))


# -- export formats ------------------------------------------------------------------


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)),
                  value)


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    fields, current, i = [], "", 0
    while len(fields) < 7:
        ch = line[i]
        if ch == "\\":
            current += line[i + 1]
            i += 2
            continue
        if ch == "|":
            fields.append(current)
            current = ""
        else:
            current += ch
        i += 1
    ext = dict((k, _unescape(v)) for k, v in
               re.findall(r"(\w+)=((?:\\.|[^\\])*?)(?= \w+=|$)", line[i:]))
    return fields, ext


SYSLOG = re.compile(r"^<(?P<pri>\d{1,3})>1 (?P<ts>\S+) (?P<host>\S+) (?P<app>\S+) "
                    r"(?P<procid>\S+) (?P<msgid>\S+) \[(?P<sdid>\S+)(?P<params>(?: \w+="
                    r'"(?:\\.|[^"\\])*")*)\] (?P<msg>.*)$')


def parse_syslog(line: str) -> tuple[dict[str, str], dict[str, str]]:
    match = SYSLOG.match(line)
    assert match, line
    params = {k: _unescape(v) for k, v in
              re.findall(r'(\w+)="((?:\\.|[^"\\])*)"', match.group("params"))}
    return match.groupdict(), params


def test_export_formats_escape_and_parse(log):
    nasty = 'a|b=c\\d"e]f'
    log.append("model.delete", nasty, {"note": "line1\nline2 | x=y ] \" \\"})
    log.append("inference", "svc", {"model": "bc"})
    (first, second) = list(log.records())

    cef = list(export(log, format="cef"))
    header, ext = parse_cef(cef[0])
    assert header[:6] == ["CEF:0", "appliance", "appliance", "0.1.0", "model.delete",
                          "model version deleted"] and header[6] == "6"
    assert ext["suser"] == nasty and ext["externalId"] == "1" and ext["cs1"] == first.hash
    assert json.loads(ext["msg"]) == first.data() and "\n" not in cef[0]
    assert int(ext["rt"]) == int(datetime.fromisoformat(first.at).timestamp() * 1000)
    assert parse_cef(to_cef(second))[0][6] == "1"

    lines = list(export(log, format="syslog"))
    fields, params = parse_syslog(lines[0])
    assert fields["pri"] == str(13 * 8 + 5) and fields["app"] == "appliance"
    assert fields["msgid"] == "model.delete" and fields["sdid"] == "audit@32473"
    assert datetime.fromisoformat(fields["ts"]) == datetime.fromisoformat(first.at)
    assert params == {"seq": "1", "hash": first.hash, "prevHash": GENESIS, "actor": nasty}
    assert json.loads(fields["msg"]) == first.data()

    jsonl = [json.loads(line) for line in export(log, format="jsonl")]
    assert jsonl[0] == first.to_dict() and jsonl[1]["seq"] == 2
    later = datetime.fromisoformat(second.at)
    assert [r["seq"] for r in map(json.loads, export(log, since=later))] == [2]
    assert list(export(log, until=datetime.fromisoformat(first.at))) == []


# -- forwarding ----------------------------------------------------------------------


def read_frames(conn: socket.socket, count: int, timeout: float = 10) -> list[str]:
    """RFC 6587 octet-counted frames."""
    conn.settimeout(timeout)
    buffer, frames = b"", []
    while len(frames) < count:
        while b" " not in buffer or len(buffer) < buffer.index(b" ") + 1 + int(
                buffer[:buffer.index(b" ")]):
            chunk = conn.recv(65536)
            if not chunk:
                return frames
            buffer += chunk
        length, _, rest = buffer.partition(b" ")
        frames.append(rest[:int(length)].decode())
        buffer = rest[int(length):]
    return frames


class StreamListener:
    """A TCP (optionally TLS) syslog receiver in a thread."""

    def __init__(self, count: int, tls: ssl.SSLContext | None = None, port: int = 0) -> None:
        self.server = socket.create_server(("127.0.0.1", port))
        self.port = self.server.getsockname()[1]
        self.frames: list[str] = []
        self.tls, self.count = tls, count
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.server.settimeout(15)
        conn, _ = self.server.accept()
        if self.tls is not None:
            conn = self.tls.wrap_socket(conn, server_side=True)
        with conn:
            self.frames = read_frames(conn, self.count)

    def close(self) -> list[str]:
        self.thread.join(15)
        self.server.close()
        return self.frames


def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "siem.test")])
    now = datetime.now(UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([
                x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(ski, critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "siem.pem", tmp_path / "siem.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def test_forwarding_over_udp_delivers_rfc5424_datagrams(log):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    forwarder = SyslogForwarder("127.0.0.1", receiver.getsockname()[1], "udp")
    log.add_sink(forwarder)
    try:
        fill(log, 3)
        got = [parse_syslog(receiver.recv(65536).decode()) for _ in range(3)]
    finally:
        forwarder.close()
        receiver.close()
    assert [params["seq"] for _, params in got] == ["1", "2", "3"]
    assert forwarder.stats()["sent"] == 3


def test_forwarding_over_tcp_uses_octet_counting(log):
    listener = StreamListener(3)
    forwarder = SyslogForwarder("127.0.0.1", listener.port, "tcp", format="cef")
    log.add_sink(forwarder)
    fill(log, 3)
    try:
        frames = listener.close()
    finally:
        forwarder.close()
    assert [parse_cef(f)[1]["externalId"] for f in frames] == ["1", "2", "3"]


def test_forwarding_over_tls_verifies_the_siem_certificate(log, tmp_path):
    cert, key_file = self_signed(tmp_path)
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key_file)
    listener = StreamListener(2, tls=server_tls)
    forwarder = SyslogForwarder("127.0.0.1", listener.port, "tls", ca_file=str(cert))
    log.add_sink(forwarder)
    fill(log, 2)
    try:
        frames = listener.close()
    finally:
        forwarder.close()
    assert [parse_syslog(f)[1]["seq"] for f in frames] == ["1", "2"]


def test_siem_down_never_slows_the_appender_and_forwarding_resumes(log):
    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()  # nothing listens there now
    forwarder = SyslogForwarder("127.0.0.1", port, "tcp", queue_max=5,
                                backoff_s=(0.05, 0.2))
    log.add_sink(forwarder)
    try:
        started = time.perf_counter()
        for i in range(40):
            log.append("model.load", "ops", {"i": i})
        elapsed = time.perf_counter() - started
        time.sleep(0.2)
        assert forwarder.dropped >= 35 and forwarder.errors >= 1
        assert elapsed < 5, elapsed
        listener = StreamListener(6, port=port)  # the SIEM comes back
        assert forwarder.flush(10)  # the oldest records, kept while it was down
        log.append("model.load", "ops", {"i": "back"})
        frames = listener.close()
    finally:
        forwarder.close()
    assert [parse_syslog(f)[1]["seq"] for f in frames] == ["1", "2", "3", "4", "5", "41"]
    assert verify(log).ok


def test_open_audit_wires_writer_and_forwarders_from_settings(tmp_path, key):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(10)
    settings = msgspec.convert({"batch_window_ms": 20, "forward": [
        {"host": "127.0.0.1", "port": receiver.getsockname()[1], "format": "cef"}]},
        AuditSettings)
    runtime = open_audit(tmp_path, settings, key)
    assert runtime is not None and runtime.auditor is not None
    try:
        runtime.auditor.record("bc", "1", "r1", "alice", "d" * 64, None, 0.3)
        runtime.close()
        got = [parse_cef(receiver.recv(65536).decode())[0][4] for _ in range(5)]
    finally:
        receiver.close()
    # each signed checkpoint (at start, at close) goes to the SIEM too
    assert got == ["writer-start", "audit.checkpoint", "inference", "writer-stop",
                   "audit.checkpoint"]
    assert open_audit(tmp_path, AuditSettings(enabled=False)) is None
    with AuditLog(tmp_path, key) as log:
        report = verify(log)
        assert report.ok and report.checkpoints_checked == 2  # signed at start and close


def test_audit_public_surface_is_sorted_and_importable():
    import appliance.audit

    assert appliance.audit.__all__ == sorted(appliance.audit.__all__)
    assert all(hasattr(appliance.audit, name) for name in appliance.audit.__all__)


# -- the command line ----------------------------------------------------------------

CLI = "import appliance.cli.audit; from appliance.cli import main; main()"


def cli(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-c", CLI, "audit", *args], env=env,
                          capture_output=True, text=True, timeout=60)


def test_cli_verify_export_checkpoint_hold_prune(tmp_path):
    with AuditLog(tmp_path) as log:  # the KeyStore's audit key, as the CLI uses
        fill(log, 5)
    r = cli("verify", data_dir=tmp_path)
    assert r.returncode == 0 and "intact" in r.stdout, r.stderr
    r = cli("checkpoint", "--json", data_dir=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["size"] == 5, r.stderr
    out = tmp_path / "audit.cef"
    r = cli("export", "--format", "cef", "-o", str(out), "--by", "auditor", data_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(out.read_text().splitlines()) == 5
    r = cli("hold", "--by", "legal", "--reason", "case 9", data_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    r = cli("prune", "--before", "2000-01-01", "--by", "ops", "--reason", "r",
            data_dir=tmp_path)
    assert r.returncode == 1 and "legal hold" in r.stderr
    assert cli("release", "--by", "legal", data_dir=tmp_path).returncode == 0
    r = cli("prune", "--before", datetime.now(UTC).date().isoformat(), "--by", "ops",
            "--reason", "r", data_dir=tmp_path)
    assert r.returncode == 1 and "minimum retention" in r.stderr
    with AuditLog(tmp_path) as log:
        assert [r.kind for r in log.records()][5:] == ["audit.export", "audit.hold",
                                                       "audit.release"]
        sql(log, ("UPDATE records SET body = '{}' WHERE seq = 3", []))
    r = cli("verify", "--json", data_dir=tmp_path)
    assert r.returncode == 1 and json.loads(r.stdout)["first_bad_seq"] == 3
    assert "BROKEN at seq 3" in cli("verify", data_dir=tmp_path).stdout


# -- loss counts, queued events, witness export ----------------------------------------


def test_loss_file_keeps_the_previous_counts_when_the_newest_slot_is_torn(tmp_path):
    from appliance.audit.losses import SLOT, LossFile

    losses = LossFile(tmp_path)
    assert losses.write({("write-failed", "inference"): [5, 1.0, 2.0]})
    assert losses.write({("write-failed", "inference"): [7, 1.0, 3.0]})
    losses.close()
    path = tmp_path / "audit.losses"
    assert path.stat().st_size == 2 * SLOT
    assert LossFile(tmp_path).read() == {("write-failed", "inference"): [7, 1.0, 3.0]}
    with path.open("r+b") as f:  # a crash half-way through writing the newer slot
        f.seek(10)
        f.write(b"\xff" * 100)
    assert LossFile(tmp_path).read() == {("write-failed", "inference"): [5, 1.0, 2.0]}


def test_auth_failures_share_the_writer_queue_bounded_and_truncated(tmp_path, key):
    from appliance.audit.bridge import record_auth_failure

    assert record_auth_failure(None, "bad", "10.0.0.1", "/v2") is False
    runtime = open_audit(tmp_path, msgspec.convert({"queue_max": 3, "batch_window_ms": 60_000},
                                                   AuditSettings), key)
    assert runtime is not None
    before = threading.active_count()
    results = [record_auth_failure(runtime, "x" * 5000, "10.0.0.1", "/" + "p" * 5000)
               for _ in range(10)]
    assert threading.active_count() == before  # no thread per failure
    assert results == [True] * 3 + [False] * 7
    runtime.close()
    with AuditLog(tmp_path, key) as log:
        failures = [r.data() for r in log.records(kinds=["auth.failure"])]
        assert len(failures) == 3 and len(failures[0]["reason"]) == 512
        assert len(failures[0]["path"]) == 512
        (gap,) = (r.data() for r in log.records(kinds=["gap"]))
        assert (gap["reason"], gap["records"], gap["lost"]) == ("queue-full", "auth.failure", 7)


def test_cli_export_checkpoints_writes_a_witness_file_that_verify_accepts(tmp_path):
    with AuditLog(tmp_path) as log:  # closing signs a checkpoint
        fill(log, 3)
    out = tmp_path / "witness.jsonl"
    r = cli("export", "--checkpoints", "-o", str(out), data_dir=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(c["type"], c["n"], c["size"]) for c in lines] == [("audit.checkpoint", 1, 3)]
    r = cli("verify", "--witness", str(out), "--json", data_dir=tmp_path)
    assert r.returncode == 0 and json.loads(r.stdout)["witness_checked"] == 1, r.stdout


def test_a_record_that_is_not_json_is_counted_and_the_rest_of_its_batch_kept(log):
    auditor = InferenceAuditor(log, batch_window_ms=60_000)
    auditor.start()
    auditor.record("bc", "1", "good-1", "c", "d", [1], 1.0)
    auditor.record("bc", "1", "bad", "c", "d", object(), 1.0)  # a summary JSON cannot hold
    auditor.record("bc", "1", "good-2", "c", "d", None, 1.0, {"arm": 2})
    auditor.close()
    assert [r.data()["request_id"] for r in log.records(kinds=["inference"])] == [
        "good-1", "good-2"]
    (gap,) = (r.data() for r in log.records(kinds=["gap"]))
    assert (gap["reason"], gap["records"], gap["lost"]) == ("not-json", "inference", 1)
    assert verify(log).ok
