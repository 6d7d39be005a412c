"""Sticky buckets and the split they feed: a key → one of 10,000 buckets → a version.

A request's key (a header, the token's subject or a request parameter) maps to bucket
``blake2b(salt ‖ model ‖ key) mod 10000``. Buckets are handed to versions *in order*
(:class:`Split`): the first version of a split owns buckets ``[0, w₁)``, the next
``[w₁, w₁ + w₂)`` and so on; a canary's candidate is always first. Raising a canary from
10 % to 20 % therefore only moves buckets 1,000-1,999 in: nobody who was in the canary
leaves it, and the same key lands in the same version across restarts, processes and
boxes, with no cookie or header echo from the client.

A request without a key gets a draw from the route's seeded random sequence instead
(so replaying a recorded trace against the same route gives the same decisions).
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Sequence

from ..errors import BadRequest

__all__ = ["BUCKETS", "MAX_KEY", "Split", "bucket", "check_key"]

BUCKETS = 10_000
#: longest key accepted (a header value, a subject, a parameter), in characters
MAX_KEY = 256


def check_key(value: str, source: str) -> str:
    """A key fit for bucketing; BadRequest (400) for an empty, over-long or non-printable
    one, naming where it came from."""
    if not value or len(value) > MAX_KEY or not value.isprintable():
        raise BadRequest(f"sticky key from {source} must be 1-{MAX_KEY} printable characters, "
                         f"got {value[:40]!r}{'…' if len(value) > 40 else ''}")
    return value


def bucket(salt: bytes, key: str) -> int:
    """The key's bucket, 0 … 9,999 (``salt`` already holds the salt and the model)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8,
                             key=salt[:64]).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def salt_for(salt: str | None, model: str) -> bytes:
    """The blake2b key of a route: its salt (default: none) and the model name."""
    return hashlib.sha256(f"{salt or ''}\x00{model}".encode()).digest()


class Split:
    """Versions owning consecutive ranges of buckets, in the order given.

    ``choose(b)`` takes a bucket (0 … 9,999) or, scaled, any draw in ``[0, BUCKETS)``;
    one bisect over a tuple, so a decision costs well under a microsecond."""

    __slots__ = ("bounds", "versions", "weights")

    def __init__(self, weights: Sequence[tuple[str, float]]) -> None:
        total = sum(w for _, w in weights)
        if total <= 0:
            raise ValueError("a split needs a positive weight")
        self.weights = tuple((v, w * 100 / total) for v, w in weights)
        bounds, edge = [], 0.0
        for _, share in self.weights:
            edge += share * BUCKETS / 100
            bounds.append(edge)
        last = max(i for i, (_, share) in enumerate(self.weights) if share > 0)
        for i in range(last, len(bounds)):  # rounding never leaves a bucket unowned
            bounds[i] = float(BUCKETS)
        self.bounds = tuple(bounds)
        self.versions = tuple(v for v, _ in weights)

    def choose(self, position: float) -> int:
        """Index of the version owning ``position`` (a bucket or a scaled draw)."""
        # a zero-weight version's bound equals the one before it: it owns no bucket
        return bisect.bisect_right(self.bounds, position)

    def shares(self) -> dict[str, float]:
        """Percent per version."""
        return dict(self.weights)
