"""The hub as witness of each box's audit log: the records a box reports are checked
against the chain the hub already holds for it.

A box sends its audit records in order, each as stored (``seq, at, kind, actor, body,
prev_hash, hash``; ``body`` the exact JSON text that was hashed). For each new record the
hub recomputes ``hash`` (:func:`appliance.audit.records.chain_hash`) and checks that
``prev_hash`` is the hash of the record it holds just before. The device row keeps the
witnessed head, ``{"seq", "hash", "records", "status", "problems"}``:

* ``ok`` — every record received so far extends the chain;
* ``gap`` — records were skipped (the box's outbox overflowed, or its retention deleted
  them before they were sent): the chain goes on from the next one, the gap is named;
* ``broken`` — a record that does not hash to its ``hash``, or one whose ``prev_hash``
  is not the witnessed head: the box's log was rewritten after the hub saw it (or the
  report was forged with the device key). It stays ``broken`` (the problem named) until
  an operator looks; ``hub devices`` shows it.

Records at or below the witnessed head are resends and are skipped. The records
themselves stay in the stored report bodies (the exact signed bytes).
"""

from __future__ import annotations

from typing import Any

from ..audit.records import chain_hash

__all__ = ["MAX_PROBLEMS", "witness"]

MAX_PROBLEMS = 20
_FIELDS = ("seq", "at", "kind", "actor", "body", "prev_hash", "hash")


def _problem(state: dict[str, Any], status: str, text: str) -> None:
    if state.get("status") != "broken":
        state["status"] = status
    problems = state.setdefault("problems", [])
    if len(problems) < MAX_PROBLEMS:
        problems.append(text)


def witness(state: dict[str, Any] | None, records: list[Any]) -> dict[str, Any]:
    """The new witnessed head of a device after ``records`` (its old ``state`` is not
    changed)."""
    out: dict[str, Any] = {"seq": 0, "hash": None, "records": 0, "status": "ok",
                           "problems": [], **(state or {})}
    out["problems"] = list(out["problems"])
    for record in records:
        if not isinstance(record, dict) or any(k not in record for k in _FIELDS):
            _problem(out, "broken", "a record without the fields seq, at, kind, actor, "
                                    "body, prev_hash, hash")
            continue
        try:
            seq = int(record["seq"])
            expected = chain_hash(str(record["prev_hash"]), seq, str(record["at"]),
                                  str(record["kind"]), str(record["actor"]),
                                  str(record["body"]))
        except (TypeError, ValueError, UnicodeEncodeError):
            _problem(out, "broken", f"record {record.get('seq')!r} is malformed")
            continue
        if seq <= out["seq"]:
            continue  # already witnessed
        if expected != record["hash"]:
            _problem(out, "broken", f"record {seq} does not hash to the hash it carries")
        elif out["hash"] is not None and seq == out["seq"] + 1 and (
                record["prev_hash"] != out["hash"]):
            _problem(out, "broken", f"record {seq} does not extend record {out['seq']} "
                                    "the hub witnessed: the log was rewritten")
        elif out["hash"] is not None and seq > out["seq"] + 1:
            _problem(out, "gap", f"records {out['seq'] + 1}..{seq - 1} were not reported")
        out["seq"], out["hash"] = seq, str(record["hash"])
        out["records"] = int(out["records"]) + 1
    return out
