"""Signed, chained checkpoints and chain verification.

A checkpoint is an Ed25519 signature (the audit key, :mod:`.keys`) over the canonical
JSON ``{"at":..,"head_hash":..,"n":N,"prev":..,"size":S}``: "the log had S records, record
S hashed to head_hash, and this is checkpoint number N, after the one whose signed
payload hashes (sha256, hex) to prev" (``GENESIS`` for the first). So checkpoints chain
to each other: deleting or replacing one breaks the link of the next.

Someone who rewrites the whole tail of the record chain with fresh hashes, or cuts it
short, cannot re-sign it without the key, so :func:`verify` sees that a signed head is no
longer on the chain. Deleting the checkpoints too is caught by the cadence rule:

    with cadence C = ``checkpoint_minutes`` > 0 and grace G, every record whose ``at``
    is more than C + G minutes before the verification time must be covered by a valid
    signed checkpoint (one whose size is at least its seq and whose head is on the chain).

A log younger than C + G verifies with no checkpoint at all (a fresh box). The server
signs at start (after any crash gap), every C minutes, and at a clean stop; any process
whose :class:`~appliance.audit.log.AuditLog` appended records signs when it closes (the
CLI), so short-lived processes leave nothing unsigned. A writer that crashed and never
restarted leaves its last < C minutes unsigned: verify reports them ("unsigned") until the
next start signs them. Someone who also holds the signing key can rewrite everything and
re-sign: only checkpoints kept off the box catch that (:mod:`.witness`).

A tombstone (written by :func:`~appliance.audit.retention.prune`) is signed the same way
over ``{"at","hash_of_last_pruned","pruned_through_seq","reason"}``; verification starts
after the newest one.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from .log import AuditLog
from .records import encode_str, iso
from .signing import (  # noqa: F401  (re-exported: the checkpoint API lives here)
    GENESIS,
    Checkpoint,
    head_of,
    key_id,
    link,
    make_checkpoint,
    store_signed,
)

MAX_PROBLEMS = 100


@dataclass
class Problem:
    """One thing wrong: ``seq`` is the first record it makes untrustworthy."""

    seq: int
    # edited | missing | out-of-chain | truncated | bad-checkpoint | rewritten |
    # checkpoint-missing | unsigned | witness-mismatch | bad-witness | checkpoint-replaced
    kind: str
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
    #: records 1..signed_through are covered by a valid signed checkpoint (or tombstone)
    signed_through: int = 0
    #: the cadence rule applied (0: not applied)
    cadence_minutes: float = 0
    witness_checked: int = 0
    #: the first witnessed checkpoint the local log disagrees with
    first_bad_witness: dict[str, Any] | None = None
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
        witnessed = (f", {self.witness_checked} witnessed checkpoint(s) match"
                     if self.witness_checked else "")
        if self.ok:
            return (f"audit log intact: {span} ({self.records_checked} checked), "
                    f"{self.checkpoints_checked} signed checkpoint(s) valid, signed through "
                    f"seq {self.signed_through}{witnessed}")
        lines = [f"audit log BROKEN at seq {self.first_bad_seq} ({span}):"]
        lines += [f"  seq {p.seq}: {p.kind}: {p.detail}" for p in self.problems]
        if self.first_bad_witness is not None:
            w = self.first_bad_witness
            lines.append(f"  first witnessed checkpoint that disagrees: n={w.get('n')} "
                         f"size={w.get('size')} head_hash={w.get('head_hash')}")
        return "\n".join(lines)


Signed = tuple[str, int, str, dict[str, Any], int, str]  # kind, size, head, data, id, payload


def _signed(rows: list[tuple[Any, ...]], keys: dict[str, Ed25519PublicKey],
            report: VerifyReport) -> list[Signed]:
    """Checkpoints and tombstones whose signature and columns hold; the rest reported."""
    good = []
    for cid, kind, at, size, head_hash, payload, signature, kid in rows:
        report.checkpoints_checked += 1
        public_key = keys.get(kid)
        try:
            if public_key is None:
                raise InvalidSignature
            public_key.verify(base64.b64decode(signature), payload.encode())
            data = msgspec.json.decode(payload)
        except (InvalidSignature, ValueError, msgspec.DecodeError):
            report.add(int(size), "bad-checkpoint", f"{kind} #{cid} (size {size}) has a "
                       "signature that does not verify with this box's audit key(s)")
            continue
        if kind == "tombstone":
            claimed = (data.get("pruned_through_seq"), data.get("hash_of_last_pruned"))
        else:
            claimed = (data.get("size"), data.get("head_hash"))
        if claimed != (size, head_hash) or data.get("at") != at:
            report.add(int(size), "bad-checkpoint", f"{kind} #{cid}: its columns differ "
                                                    "from what was signed")
            continue
        good.append((kind, int(size), head_hash, data, int(cid), payload))
    return good


def _check_links(checkpoints: list[Signed], report: VerifyReport) -> None:
    """Each chained checkpoint names the one before it: a deleted or replaced checkpoint
    breaks the link of the next one."""
    prev_payload: str | None = None
    prev_n, prev_size = 0, 0
    for _, size, _, data, cid, payload in checkpoints:
        n = data.get("n")
        if n is None:  # signed before checkpoints were chained
            prev_payload, prev_n, prev_size = payload, prev_n + 1, size
            continue
        if n != prev_n + 1:
            report.add(prev_size + 1, "checkpoint-missing",
                       f"checkpoint n={n} (#{cid}) follows n={prev_n}: signed checkpoint(s) "
                       f"{prev_n + 1}..{n - 1} were deleted")
        elif data.get("prev") != link(prev_payload):
            report.add(prev_size + 1, "checkpoint-missing",
                       f"checkpoint n={n} (#{cid}) does not link to the checkpoint before "
                       "it: that one was replaced or deleted")
        prev_payload, prev_n, prev_size = payload, int(n), size


def verify(log: AuditLog, *, cadence_minutes: float = 0, grace_minutes: float = 5,
           now: datetime | None = None, witness: Sequence[Any] = ()) -> VerifyReport:
    """Walk the whole chain and every checkpoint; name the first bad sequence number.

    ``cadence_minutes`` > 0 applies the cadence rule: a record older than
    ``cadence_minutes + grace_minutes`` (before ``now``) must be covered by a valid
    signed checkpoint. ``witness``: checkpoints as sent off the box
    (:func:`~appliance.audit.witness.read_witness`), each of which the local chain must
    still match."""
    started = time.perf_counter()
    report = VerifyReport(cadence_minutes=cadence_minutes)
    keys = {key_id(k): k for k in log.public_keys}
    moment = now or datetime.now(UTC)
    cutoff = iso(moment - timedelta(minutes=cadence_minutes + grace_minutes))
    sha256, enc = hashlib.sha256, encode_str
    with log.reader() as conn:
        conn.execute("BEGIN")  # one snapshot for the checkpoints and the records
        rows = conn.execute("SELECT id, kind, at, size, head_hash, payload, signature, key_id"
                            " FROM checkpoints ORDER BY id").fetchall()
        signed = _signed(rows, keys, report)
        tombstones = [s for s in signed if s[0] == "tombstone"]
        chained = [s for s in signed if s[0] == "checkpoint"]
        _check_links(chained, report)
        checkpoints = sorted(chained, key=lambda s: s[1])
        expected, prev = 1, GENESIS
        if tombstones:
            _, size, head_hash, _, _, _ = max(tombstones, key=lambda t: t[1])
            expected, prev = size + 1, head_hash
            report.tombstone_seq = size
        report.first_seq = expected
        wanted = {s[1]: s[2] for s in checkpoints if s[1] >= expected - 1}
        witnessed = {w.size for w in witness}
        if expected - 1 in wanted and wanted[expected - 1] != prev:
            report.add(expected, "rewritten", f"a checkpoint at seq {expected - 1} does "
                                              "not match the tombstone")
        on_chain: dict[int, str] = {expected - 1: prev}
        cursor = conn.execute("SELECT seq, at, kind, actor, body, prev_hash, hash FROM records"
                              " WHERE seq >= ? ORDER BY seq", [expected])
        checked, last_due = 0, 0
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
                if seq in wanted or seq in witnessed:
                    on_chain[seq] = digest
                if at < cutoff:
                    last_due = seq
                expected, prev = seq + 1, digest
        conn.execute("COMMIT")
    report.records_checked = checked
    report.last_seq = expected - 1
    report.signed_through = _check_checkpoints(checkpoints, wanted, on_chain, report)
    if cadence_minutes > 0 and last_due > report.signed_through:
        report.add(report.signed_through + 1, "unsigned",
                   f"records {report.signed_through + 1}..{last_due} are older than the "
                   f"checkpoint cadence ({cadence_minutes:g} min + {grace_minutes:g} min "
                   "grace) but no valid signed checkpoint covers them: checkpoints were "
                   "deleted (or a writer crashed and was never restarted: see the last "
                   "writer-start)")
    if witness:
        from .witness import check_witness

        check_witness(witness, keys, chained, on_chain, report)
    report.elapsed_s = time.perf_counter() - started
    return report


def _check_checkpoints(checkpoints: list[Signed], wanted: dict[int, str],
                       on_chain: dict[int, str], report: VerifyReport) -> int:
    """Each signed head must be on the chain; a head past the end means truncation.
    Returns the last seq a matching checkpoint (or the tombstone) covers."""
    good_through = report.first_seq - 1
    for _, size, head_hash, _, _, _ in checkpoints:
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
    return good_through
