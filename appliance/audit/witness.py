"""Witnessed checkpoints: signed checkpoints kept off the box, checked against the log.

Every signed checkpoint is also sent off the box (each ``[[audit.forward]]`` SIEM gets it
as a record of kind ``audit.checkpoint``; ``appliance audit export --checkpoints`` writes
them). Someone who holds the local signing key can rewrite the log and re-sign fresh
checkpoints, but cannot change what a witness already holds, so
``appliance audit verify --witness FILE`` catches that rewrite too.

A witness FILE is text, one checkpoint per line, in any of these forms (other lines, such
as the SIEM's other records, are skipped):

- JSON (what ``audit export --checkpoints`` writes)::

    {"type":"audit.checkpoint","id":7,"n":7,"size":1200,"head_hash":"..","at":"..",
     "prev":"..","payload":"<the signed canonical JSON>","signature":"<base64>",
     "key_id":".."}

- the RFC 5424 line the forwarder sent (MSGID ``audit.checkpoint``, MSG that JSON);
- the CEF line the forwarder sent (``cat=audit.checkpoint``, ``msg=`` that JSON).

``payload`` is what was signed (``{"at","head_hash","n","prev","size"}``); the other
fields repeat it for people and must agree with it.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ..errors import BadRequest
from .log import AuditLog
from .records import Record

if TYPE_CHECKING:
    from .checkpoints import Signed, VerifyReport

KIND = "audit.checkpoint"
_CEF_MSG = re.compile(r"(?:^| )msg=(.*)$")


@dataclass(frozen=True)
class Witnessed:
    """One checkpoint as a witness holds it."""

    n: int
    size: int
    head_hash: str
    at: str
    payload: str
    signature: str
    key_id: str


def witness_dict(cid: int, size: int, head_hash: str, at: str, payload: str,
                 signature: str, kid: str) -> dict[str, Any]:
    """The JSON object of one stored checkpoint row (module docstring)."""
    data = json.loads(payload)
    return {"type": KIND, "id": cid, "n": data.get("n"), "size": size, "head_hash": head_hash,
            "at": at, "prev": data.get("prev"), "payload": payload, "signature": signature,
            "key_id": kid}


def checkpoints_after(log: AuditLog, after_id: int = 0) -> list[dict[str, Any]]:
    """Stored checkpoints (not tombstones) with an id above ``after_id``, oldest first."""
    with log.reader() as conn:
        rows = conn.execute("SELECT id, size, head_hash, at, payload, signature, key_id FROM "
                            "checkpoints WHERE kind = 'checkpoint' AND id > ? ORDER BY id",
                            [after_id]).fetchall()
    return [witness_dict(*row) for row in rows]


def as_record(checkpoint: dict[str, Any]) -> Record:
    """A checkpoint dressed as a record for the forwarders (seq = its size)."""
    body = json.dumps(checkpoint, sort_keys=True, separators=(",", ":"))
    return Record(int(checkpoint["size"]), str(checkpoint["at"]), KIND, "appliance", body,
                  str(checkpoint.get("prev") or ""), str(checkpoint["head_hash"]))


def _cef_unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)),
                  value)


def _json_of(line: str) -> Any:
    if line.startswith("{"):
        return json.loads(line)
    if line.startswith("CEF:"):
        match = _CEF_MSG.search(line)
        return json.loads(_cef_unescape(match.group(1))) if match else None
    if line.startswith("<"):  # RFC 5424: the MSG follows the structured data
        start = line.find("] {")
        return json.loads(line[start + 2:]) if start >= 0 else None
    return None


def parse_witness(lines: Iterable[str]) -> list[Witnessed]:
    """The checkpoints in ``lines`` (module docstring); other lines are skipped."""
    found: list[Witnessed] = []
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if KIND not in line:
            continue
        try:
            obj = _json_of(line)
        except ValueError:
            raise BadRequest(f"witness line {number} names {KIND} but its JSON does not "
                             "parse") from None
        if not isinstance(obj, dict) or obj.get("type") != KIND:
            continue
        try:
            found.append(Witnessed(int(obj["n"] or 0), int(obj["size"]),
                                   str(obj["head_hash"]), str(obj["at"]), str(obj["payload"]),
                                   str(obj["signature"]), str(obj["key_id"])))
        except (KeyError, TypeError, ValueError):
            raise BadRequest(f"witness line {number}: a checkpoint needs n, size, head_hash, "
                             "at, payload, signature and key_id") from None
    return found


def read_witness(path: Path) -> list[Witnessed]:
    """The checkpoints in the witness file ``path``; BadRequest when it holds none."""
    try:
        with Path(path).open(encoding="utf-8", errors="replace") as f:
            found = parse_witness(f)
    except OSError as exc:
        raise BadRequest(f"witness file {path} cannot be read: {exc}") from None
    if not found:
        raise BadRequest(f"witness file {path} holds no {KIND} line: give the checkpoints "
                         "as `appliance audit export --checkpoints` writes them, or the "
                         "SIEM's copy of the forwarded lines")
    return found


def _signature_holds(w: Witnessed, keys: dict[str, Ed25519PublicKey]) -> bool:
    key = keys.get(w.key_id)
    if key is None:
        return False
    try:
        key.verify(base64.b64decode(w.signature), w.payload.encode())
        data = json.loads(w.payload)
    except (InvalidSignature, ValueError):
        return False
    return (data.get("size"), data.get("head_hash"), data.get("n", 0) or 0) == (
        w.size, w.head_hash, w.n)


def check_witness(witness: Sequence[Witnessed], keys: dict[str, Ed25519PublicKey],
                  local: Sequence[Signed], on_chain: dict[int, str],
                  report: VerifyReport) -> None:
    """Each witnessed checkpoint must be signed by a key of this box and its head must
    still be on the local chain; the first one that disagrees (by size) is
    ``report.first_bad_witness``. One whose head matches but which is missing from (or
    different in) the local checkpoints is reported as ``checkpoint-replaced``."""
    local_by_n = {int(s[3]["n"]): s[5] for s in local if "n" in s[3]}
    unique = sorted({w.payload: w for w in witness}.values(), key=lambda w: (w.size, w.n))
    good_through = report.tombstone_seq
    for w in unique:
        reason = None
        if not _signature_holds(w, keys):
            reason = ("bad-witness", "its signature does not verify with this box's audit "
                      "key(s): the witness was altered, or the box's key was replaced")
        elif w.size < report.tombstone_seq:
            continue  # pruned behind a tombstone: nothing left to compare
        elif w.size > report.last_seq:
            reason = ("witness-mismatch", f"it covers {w.size} records but the log ends at "
                      f"{report.last_seq}")
        elif on_chain.get(w.size) != w.head_hash:
            reason = ("witness-mismatch", f"record {w.size} hashes to "
                      f"{on_chain.get(w.size)} locally, the witness says {w.head_hash}: "
                      f"records {good_through + 1}..{w.size} were rewritten")
        if reason is None:
            report.witness_checked += 1
            good_through = max(good_through, w.size)
            if w.n and local_by_n.get(w.n) != w.payload:  # the records still match it
                report.add(w.size + 1, "checkpoint-replaced", f"witnessed checkpoint n={w.n}"
                           f" (size {w.size}) is " + ("gone from the local checkpoints"
                                                      if w.n not in local_by_n else
                                                      "not the local checkpoint n="
                                                      f"{w.n}") + ": they were re-signed")
            continue
        report.add(good_through + 1, reason[0], f"witnessed checkpoint n={w.n} "
                   f"(size {w.size}, signed {w.at}): {reason[1]}")
        if report.first_bad_witness is None:
            report.first_bad_witness = {"n": w.n, "size": w.size, "head_hash": w.head_hash,
                                        "at": w.at, "local_head_hash": on_chain.get(w.size),
                                        "reason": reason[1]}
