"""The hub's hash-chained audit log of operator commands (and enrolments).

Each row carries the hash of the row before it, as the box's audit log does
(:mod:`appliance.audit.log`)::

    hash = sha256(prev_hash || envelope).hexdigest()
    envelope = {"action":A,"actor":P,"at":T,"detail":D,"seq":N}

``prev_hash`` is the previous row's ``hash`` (:data:`GENESIS`, 64 zeros, before the first
row); the envelope is canonical JSON (sorted keys, no whitespace, UTF-8) with ``D`` the
stored ``detail`` text verbatim, itself canonical JSON. Anyone holding the rows can
recompute the chain with any JSON library. Changing, deleting, inserting or reordering a
row breaks the chain at that row, which :func:`verify_chain` names.

Appends run inside the caller's write transaction, so a command and its record commit
together; ``seq`` is the primary key, so two hub processes cannot both append the same
``seq`` (the loser chains its record after the winner's, see :func:`append`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import msgspec
from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError

from ..audit.records import canonical_json, encode_str, now_iso
from . import store as db
from .store import HubStore

GENESIS = "0" * 64
_RETRIES = 5


def envelope(seq: int, at: str, actor: str, action: str, detail: str) -> bytes:
    """``canonical_json({action, actor, at, detail, seq})`` with ``detail`` verbatim."""
    return b"".join((b'{"action":', encode_str(action), b',"actor":', encode_str(actor),
                     b',"at":', encode_str(at), b',"detail":', detail.encode(),
                     b',"seq":', str(seq).encode(), b"}"))


def chain_hash(prev_hash: str, seq: int, at: str, actor: str, action: str,
               detail: str) -> str:
    """The hash a row with these fields must carry."""
    return hashlib.sha256(prev_hash.encode("ascii")
                          + envelope(seq, at, actor, action, detail)).hexdigest()


def append(conn: Connection, *, actor: str, action: str, detail: Mapping[str, Any],
           at: str | None = None) -> dict[str, Any]:
    """Append one record in the transaction ``conn``; returns the row written. Another
    hub process that took the next ``seq`` first (PostgreSQL; SQLite serialises writers
    with ``BEGIN IMMEDIATE``) makes the insert fail inside a savepoint: the head is read
    again and the record chained after the newcomer."""
    at = at or now_iso()
    text = canonical_json(dict(detail)).decode()
    for attempt in range(_RETRIES):
        head = db.audit_head(conn)
        seq, prev = (head[0] + 1, head[1]) if head is not None else (1, GENESIS)
        row = {"seq": seq, "at": at, "actor": actor, "action": action, "detail": text,
               "prev_hash": prev, "hash": chain_hash(prev, seq, at, actor, action, text)}
        try:
            with conn.begin_nested():
                db.insert_audit(conn, **row)
            return row
        except IntegrityError:
            if attempt == _RETRIES - 1:
                raise
    raise AssertionError("unreachable")


def verify_chain(store: HubStore, *, batch: int = 1000) -> dict[str, Any]:
    """Recompute the whole chain. Returns ``{"ok", "records", "head", "problem",
    "bad_seq"}``; ``problem`` says what is wrong at ``bad_seq`` (an edited, removed,
    inserted or reordered row), None when the chain is intact."""
    prev, expected, count = GENESIS, 1, 0
    with store.read() as conn:
        while True:
            rows = db.audit_rows(conn, after=expected - 1, limit=batch)
            if not rows:
                break
            for row in rows:
                problem = _check(row, expected, prev)
                if problem is not None:
                    return {"ok": False, "records": count, "head": prev, "problem": problem,
                            "bad_seq": row["seq"]}
                prev, expected, count = row["hash"], expected + 1, count + 1
    return {"ok": True, "records": count, "head": prev, "problem": None, "bad_seq": None}


def _check(row: dict[str, Any], expected: int, prev: str) -> str | None:
    seq = int(row["seq"])
    if seq != expected:
        return f"record {expected} is missing (the next record is {seq}): rows were removed"
    if row["prev_hash"] != prev:
        return (f"record {seq} does not follow record {seq - 1}: its prev_hash is "
                f"{row['prev_hash']}, the record before hashes to {prev}")
    try:
        canonical = canonical_json(msgspec.json.decode(row["detail"])).decode()
    except msgspec.DecodeError:
        canonical = None
    if canonical != row["detail"]:
        return f"record {seq}'s detail is not the canonical JSON it was written as: edited"
    actual = chain_hash(prev, seq, row["at"], row["actor"], row["action"], row["detail"])
    if actual != row["hash"]:
        return (f"record {seq} was changed after it was written: its fields hash to "
                f"{actual}, the chain holds {row['hash']}")
    return None
