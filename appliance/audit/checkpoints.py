"""Signed checkpoints and chain verification.

A checkpoint is an Ed25519 signature (the KeyStore's ``audit`` key) over the canonical
JSON ``{"at":..,"head_hash":..,"size":N}``: "the log had N records and record N hashed
to head_hash". Someone who rewrites the whole tail of the chain with fresh hashes, or
cuts it short, cannot re-sign it, so the next :func:`verify` sees that the signed head is
no longer on the chain. Between two checkpoints only the hashes protect the records: the
checkpoint interval (and live SIEM forwarding) bounds what a rewrite can hide.

A tombstone (written by :func:`~appliance.audit.retention.prune`) is signed the same way
over ``{"at","hash_of_last_pruned","pruned_through_seq","reason"}``; verification starts
after the newest one.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .log import GENESIS, AuditLog, canonical_json, encode_str, head_of, now_iso

MAX_PROBLEMS = 100


def key_id(public_key: Ed25519PublicKey) -> str:
    """First 16 hex digits of sha256 of the raw public key: names the key that signed."""
    raw = public_key.public_bytes(Encoding.Raw, PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def store_signed(conn: sqlite3.Connection, log: AuditLog, kind: str, size: int,
                 head_hash: str, payload: dict[str, Any]) -> int:
    """Sign ``payload`` and insert it into ``checkpoints`` on ``conn`` (caller's transaction)."""
    message = canonical_json(payload)
    signature = base64.b64encode(log.signing_key.sign(message)).decode()
    cursor = conn.execute(
        "INSERT INTO checkpoints (kind, at, size, head_hash, payload, signature, key_id) "
        "VALUES (?, ?, ?, ?, ?, ?, ?)",
        [kind, payload["at"], size, head_hash, message.decode(), signature,
         key_id(log.public_key)])
    return int(cursor.lastrowid or 0)


@dataclass
class Checkpoint:
    id: int
    size: int
    head_hash: str
    at: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_checkpoint(log: AuditLog) -> Checkpoint:
    """Sign the current head (a plain function for a scheduler job). When nothing was
    appended since the last checkpoint, that one is returned and no row is added."""
    with log.reader() as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            size, head = head_of(conn)
            row = conn.execute("SELECT id, size, head_hash, at FROM checkpoints WHERE "
                               "kind = 'checkpoint' ORDER BY id DESC LIMIT 1").fetchone()
            if row and row[1] == size and row[2] == head:
                conn.execute("ROLLBACK")
                return Checkpoint(*row)
            at = now_iso()
            cid = store_signed(conn, log, "checkpoint", size, head,
                               {"size": size, "head_hash": head, "at": at})
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return Checkpoint(cid, size, head, at)


@dataclass
class Problem:
    """One thing wrong: ``seq`` is the first record it makes untrustworthy."""

    seq: int
    kind: str  # edited | missing | out-of-chain | truncated | bad-checkpoint | rewritten
    detail: str


@dataclass
class VerifyReport:
    ok: bool = True
    first_seq: int = 1
    last_seq: int = 0
    records_checked: int = 0
    checkpoints_checked: int = 0
    tombstone_seq: int = 0
    first_bad_seq: int | None = None
    problems: list[Problem] = field(default_factory=list)
    elapsed_s: float = 0.0

    def add(self, seq: int, kind: str, detail: str) -> None:
        self.ok = False
        if self.first_bad_seq is None or seq < self.first_bad_seq:
            self.first_bad_seq = seq
        if len(self.problems) < MAX_PROBLEMS:
            self.problems.append(Problem(seq, kind, detail))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        span = f"records {self.first_seq}..{self.last_seq}"
        if self.ok:
            return (f"audit log intact: {span} ({self.records_checked} checked), "
                    f"{self.checkpoints_checked} signed checkpoint(s) valid")
        lines = [f"audit log BROKEN at seq {self.first_bad_seq} ({span}):"]
        lines += [f"  seq {p.seq}: {p.kind}: {p.detail}" for p in self.problems]
        return "\n".join(lines)


def _signed(rows: list[tuple[Any, ...]], public_key: Ed25519PublicKey,
            report: VerifyReport) -> list[tuple[str, int, str, dict[str, Any]]]:
    """Checkpoints and tombstones whose signature and columns hold; the rest reported."""
    good = []
    for cid, kind, at, size, head_hash, payload, signature in rows:
        report.checkpoints_checked += 1
        try:
            public_key.verify(base64.b64decode(signature), payload.encode())
            data = msgspec.json.decode(payload)
        except (InvalidSignature, ValueError, msgspec.DecodeError):
            report.add(int(size), "bad-checkpoint", f"{kind} #{cid} (size {size}) has a "
                                                    "signature that does not verify")
            continue
        if kind == "tombstone":
            claimed = (data.get("pruned_through_seq"), data.get("hash_of_last_pruned"))
        else:
            claimed = (data.get("size"), data.get("head_hash"))
        if claimed != (size, head_hash) or data.get("at") != at:
            report.add(int(size), "bad-checkpoint", f"{kind} #{cid}: its columns differ "
                                                    "from what was signed")
            continue
        good.append((kind, int(size), head_hash, data))
    return good


def verify(log: AuditLog) -> VerifyReport:
    """Walk the whole chain and every checkpoint; name the first bad sequence number."""
    started = time.perf_counter()
    report = VerifyReport()
    public_key = log.public_key
    sha256, enc = hashlib.sha256, encode_str
    with log.reader() as conn:
        conn.execute("BEGIN")  # one snapshot for the checkpoints and the records
        rows = conn.execute("SELECT id, kind, at, size, head_hash, payload, signature "
                            "FROM checkpoints ORDER BY id").fetchall()
        signed = _signed(rows, public_key, report)
        tombstones = [s for s in signed if s[0] == "tombstone"]
        checkpoints = sorted((s for s in signed if s[0] == "checkpoint"), key=lambda s: s[1])
        expected, prev = 1, GENESIS
        if tombstones:
            _, size, head_hash, _ = max(tombstones, key=lambda t: t[1])
            expected, prev = size + 1, head_hash
            report.tombstone_seq = size
        report.first_seq = expected
        wanted = {size: head for _, size, head, _ in checkpoints if size >= expected - 1}
        if expected - 1 in wanted and wanted[expected - 1] != prev:
            report.add(expected, "rewritten", f"a checkpoint at seq {expected - 1} does "
                                              "not match the tombstone")
        on_chain: dict[int, str] = {expected - 1: prev}
        cursor = conn.execute("SELECT seq, at, kind, actor, body, prev_hash, hash FROM records"
                              " WHERE seq >= ? ORDER BY seq", [expected])
        checked = 0
        while batch := cursor.fetchmany(5000):
            for seq, at, kind, actor, body, prev_hash, digest in batch:
                checked += 1
                if seq != expected:
                    report.add(expected, "missing", f"records {expected}..{seq - 1} are "
                                                    "missing (deleted)")
                if prev_hash != prev:
                    report.add(seq, "out-of-chain", "its prev_hash is not the hash of the "
                               "record before it (a record was deleted, inserted or moved)")
                # envelope() inlined: this loop is the verify throughput
                if sha256(b"".join((prev_hash.encode(), b'{"actor":', enc(actor), b',"at":',
                                    enc(at), b',"body":', body.encode(), b',"kind":',
                                    enc(kind), b',"seq":', str(seq).encode(), b"}"))
                          ).hexdigest() != digest:
                    report.add(seq, "edited", "its contents do not match its hash")
                if seq in wanted:
                    on_chain[seq] = digest
                expected, prev = seq + 1, digest
        conn.execute("COMMIT")
    report.records_checked = checked
    report.last_seq = expected - 1
    _check_checkpoints(checkpoints, wanted, on_chain, report)
    report.elapsed_s = time.perf_counter() - started
    return report


def _check_checkpoints(checkpoints: list[tuple[str, int, str, dict[str, Any]]],
                       wanted: dict[int, str], on_chain: dict[int, str],
                       report: VerifyReport) -> None:
    """Each signed head must be on the chain; a head past the end means truncation."""
    good_through = report.first_seq - 1
    for _, size, head_hash, _ in checkpoints:
        if size not in wanted:
            continue  # pruned away: the tombstone vouches for it
        if size > report.last_seq:
            report.add(report.last_seq + 1, "truncated",
                       f"a signed checkpoint covers {size} records but the log ends at "
                       f"{report.last_seq}: records {report.last_seq + 1}..{size} are gone")
        elif on_chain.get(size) != head_hash:
            report.add(good_through + 1, "rewritten",
                       f"the signed checkpoint at seq {size} does not match the chain: "
                       f"records {good_through + 1}..{size} were rewritten")
        else:
            good_through = max(good_through, size)
