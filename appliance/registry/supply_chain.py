"""The supply-chain records of a version: its SBOM (``versions.sbom``) and the weight
fingerprints of its variants (``fingerprints``, one row per variant).

Both are defined by migration 4 (:mod:`appliance.registry.db`); what goes into them is
computed by :mod:`appliance.security.sbom` and :mod:`appliance.security.fingerprint`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlite_utils

from .db import now, transaction

#: columns of :func:`fingerprint_matches` rows, in order
MATCH_KEYS = ("model", "version", "precision", "format", "tensors", "recorded_at", "stage")


def sbom_text(db: sqlite_utils.Database, model: str, version: str) -> str | None:
    """The stored SBOM JSON of one version, or None."""
    row = db.execute("SELECT sbom FROM versions WHERE model = ? AND version = ?",
                     [model, version]).fetchone()
    return row[0] if row and row[0] else None


def set_sbom(db: sqlite_utils.Database, model: str, version: str, doc: dict[str, Any]) -> None:
    """Keep ``doc`` as the SBOM of one version (no such version: nothing changes)."""
    with transaction(db):
        db.execute("UPDATE versions SET sbom = ? WHERE model = ? AND version = ?",
                   [json.dumps(doc), model, version])


def store_fingerprint_rows(db: sqlite_utils.Database, model: str, version: str,
                           rows: Iterable[tuple[str, str, str, int]]) -> None:
    """Record ``(precision, digest, format, tensors)`` rows for one version in one
    transaction, replacing what the same variants had."""
    at = now()
    with transaction(db):
        for precision, digest, fmt, tensors in rows:
            db.execute("INSERT OR REPLACE INTO fingerprints (digest, model, version, format, "
                       "precision, tensors, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                       [digest, model, version, fmt, precision, tensors, at])


def fingerprint_matches(db: sqlite_utils.Database, digest: str,
                        fmt: str) -> list[dict[str, Any]]:
    """Every variant recorded with fingerprint ``digest`` of format ``fmt``, with the
    stage of its version (None once the version is deleted); keys :data:`MATCH_KEYS`."""
    rows = db.execute(
        "SELECT f.model, f.version, f.precision, f.format, f.tensors, f.created_at, v.stage "
        "FROM fingerprints f LEFT JOIN versions v ON v.model = f.model AND "
        "v.version = f.version WHERE f.digest = ? AND f.format = ? "
        "ORDER BY f.model, f.version, f.precision", [digest, fmt]).fetchall()
    return [dict(zip(MATCH_KEYS, row)) for row in rows]


def fingerprints_of(db: sqlite_utils.Database, model: str, version: str) -> dict[str, str]:
    """The recorded fingerprint digests of one version, by precision."""
    rows = db.execute("SELECT precision, digest FROM fingerprints WHERE model = ? "
                      "AND version = ? ORDER BY precision", [model, version])
    return dict(rows.fetchall())
