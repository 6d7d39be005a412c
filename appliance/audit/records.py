"""The audit log's record format: canonical JSON, the chained hash, timestamps, and the
:class:`Record` / :class:`Entry` types (kept apart from the SQLite store in ``log.py``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NamedTuple

import msgspec

from ..errors import BadRequest

#: what a record kind may look like (checked on append and on the writer's queue)
KIND_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")

_encoder = msgspec.json.Encoder(order="sorted")
encode_str = msgspec.json.Encoder().encode


def canonical_json(obj: Any) -> bytes:
    """Canonical JSON bytes of ``obj``: sorted keys, no whitespace, UTF-8."""
    return _encoder.encode(obj)


def envelope(seq: int, at: str, kind: str, actor: str, body: str) -> bytes:
    """``canonical_json({seq, at, kind, actor, body})`` with ``body`` embedded verbatim."""
    return b"".join((b'{"actor":', encode_str(actor), b',"at":', encode_str(at),
                     b',"body":', body.encode(), b',"kind":', encode_str(kind),
                     b',"seq":', str(seq).encode(), b"}"))


def chain_hash(prev_hash: str, seq: int, at: str, kind: str, actor: str, body: str) -> str:
    """The hash a record with these fields must carry."""
    return hashlib.sha256(prev_hash.encode("ascii")
                          + envelope(seq, at, kind, actor, body)).hexdigest()


def now_iso() -> str:
    """UTC now as ISO 8601 with microseconds (the format of every ``at``)."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def iso(moment: datetime) -> str:
    """``moment`` in the log's timestamp format (naive datetimes are taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True, slots=True)
class Record:
    """One committed row; ``body`` is its canonical JSON text."""

    seq: int
    at: str
    kind: str
    actor: str
    body: str
    prev_hash: str
    hash: str

    def data(self) -> Any:
        """The body as Python objects."""
        return msgspec.json.decode(self.body)

    def to_dict(self) -> dict[str, Any]:
        return {"seq": self.seq, "at": self.at, "kind": self.kind, "actor": self.actor,
                "body": self.data(), "prev_hash": self.prev_hash, "hash": self.hash}


class Entry(NamedTuple):
    """A record to append; ``at`` defaults to the commit time."""

    kind: str
    actor: str
    body: Mapping[str, Any]
    at: str | None = None


def _check(kind: str, actor: str) -> None:
    if not KIND_PATTERN.match(kind):
        raise BadRequest(f"audit record kind {kind!r} is not valid: use 1-64 of a-z 0-9 . _ - "
                         "starting with a letter or digit")
    if not actor:
        raise BadRequest("an audit record needs an actor (who did it)")


def prepare(entry: Entry) -> Entry:
    """Check kind and actor; bring ``at`` to the log's UTC format (prune and export compare
    timestamps as strings)."""
    _check(entry.kind, entry.actor)
    at = entry.at
    if at is None or (len(at) == 32 and at.endswith("+00:00")):
        return entry
    try:
        return entry._replace(at=iso(datetime.fromisoformat(at)))
    except ValueError:
        raise BadRequest(f"audit record time {at!r} is not ISO 8601") from None
