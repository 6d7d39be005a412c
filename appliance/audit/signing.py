"""Signing the chain's head: checkpoints (chained to each other and numbered) and the
signed rows of the ``checkpoints`` table; kept apart from verification
(:mod:`.checkpoints`) so the log can sign its head when it closes without an import cycle.
"""

from __future__ import annotations

import base64
import hashlib
import sqlite3
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .records import canonical_json, now_iso

if TYPE_CHECKING:
    from .log import AuditLog

#: the hash before the first record
GENESIS = "0" * 64


def head_of(conn: sqlite3.Connection) -> tuple[int, str]:
    """The chain head as seen on ``conn``: the last record, else the last tombstone."""
    row = conn.execute("SELECT seq, hash FROM records ORDER BY seq DESC LIMIT 1").fetchone()
    if row:
        return int(row[0]), str(row[1])
    row = conn.execute("SELECT size, head_hash FROM checkpoints WHERE kind = 'tombstone' "
                       "ORDER BY size DESC LIMIT 1").fetchone()
    return (int(row[0]), str(row[1])) if row else (0, GENESIS)


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


def link(payload: str | None) -> str:
    """What the next checkpoint's ``prev`` must be: sha256 of this one's signed payload."""
    return hashlib.sha256(payload.encode()).hexdigest() if payload else GENESIS


@dataclass
class Checkpoint:
    id: int
    size: int
    head_hash: str
    at: str
    n: int = 0
    prev: str = GENESIS

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(payload: str, fallback: int) -> int:
    try:
        return int(msgspec.json.decode(payload).get("n", fallback))
    except (msgspec.DecodeError, AttributeError, TypeError, ValueError):
        return fallback


def make_checkpoint(log: AuditLog) -> Checkpoint:
    """Sign the current head, chained to the previous checkpoint (a plain function for a
    scheduler job). When nothing was appended since the last checkpoint, that one is
    returned and no row is added."""
    with log.reader() as conn:
        conn.execute("BEGIN IMMEDIATE")
        try:
            size, head = head_of(conn)
            row = conn.execute("SELECT id, size, head_hash, at, payload FROM checkpoints "
                               "WHERE kind = 'checkpoint' ORDER BY id DESC LIMIT 1").fetchone()
            if row and row[1] == size and row[2] == head:
                conn.execute("ROLLBACK")
                n = _number(row[4], 0)
                return Checkpoint(row[0], row[1], row[2], row[3], n=n,
                                  prev=str(msgspec.json.decode(row[4]).get("prev", GENESIS)))
            if row is None:
                n = 1
            else:
                count = conn.execute("SELECT COUNT(*) FROM checkpoints WHERE kind = "
                                     "'checkpoint'").fetchone()[0]
                n = _number(row[4], count) + 1
            at, prev = now_iso(), link(row[4] if row else None)
            cid = store_signed(conn, log, "checkpoint", size, head,
                               {"size": size, "head_hash": head, "at": at, "n": n,
                                "prev": prev})
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
    return Checkpoint(cid, size, head, at, n, prev)
