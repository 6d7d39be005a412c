"""Open the registry database and bring its schema up to date.

Migrations are numbered functions applied in order inside one transaction each; the
``_migrations`` table records which ran, so opening an old registry upgrades it and
opening a current one changes nothing.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime
from pathlib import Path

import sqlite_utils

Migration = Callable[[sqlite_utils.Database], None]


def _m001_models_and_versions(db: sqlite_utils.Database) -> None:
    db.table("models").create({"name": str, "created_at": str, "created_by": str,
                         "description": str}, pk="name")
    db.table("versions").create({
        "id": int, "model": str, "version": str, "format": str, "primary_file": str,
        "files": str, "inputs": str, "outputs": str, "artifact": str, "digest": str,
        "stage": str, "created_at": str, "created_by": str, "source": str,
    }, pk="id", foreign_keys=[("model", "models", "name")], not_null={"model", "version"})
    db.table("versions").create_index(["model", "version"], unique=True)
    db.table("events").create({"id": int, "at": str, "actor": str, "action": str, "model": str,
                         "version": str, "detail": str}, pk="id")


def _m002_variants_and_backend_pin(db: sqlite_utils.Database) -> None:
    # precision of the main files; more variants (other precisions or formats) as JSON
    db.execute("ALTER TABLE versions ADD COLUMN precision TEXT NOT NULL DEFAULT 'fp32'")
    db.execute("ALTER TABLE versions ADD COLUMN variants TEXT NOT NULL DEFAULT '[]'")
    # a backend the version must run on (e.g. onnxruntime-cuda), or NULL for the profile's
    db.execute("ALTER TABLE versions ADD COLUMN backend TEXT")


def _m003_lifecycle(db: sqlite_utils.Database) -> None:
    """Packages, stages, approvals, consumers, holds, retention, deprecation, notices."""
    for column, decl in [
        ("manifest", "TEXT NOT NULL DEFAULT '{}'"),     # package manifest (lineage, tags, ...)
        ("package_digest", "TEXT"),                     # sha256 of the manifest as pushed
        ("stage_changed_at", "TEXT"),
        ("failure_reason", "TEXT"),
        ("deprecation_date", "TEXT"), ("sunset_date", "TEXT"), ("successor", "TEXT"),
    ]:
        db.execute(f"ALTER TABLE versions ADD COLUMN {column} {decl}")
    db.table("stage_history").create({"id": int, "model": str, "version": str, "from_stage": str,
                                "to_stage": str, "at": str, "actor": str, "reason": str},
                               pk="id")
    db.table("stage_history").create_index(["model", "version"])
    db.table("approvals").create({"id": int, "model": str, "version": str, "approver": str,
                            "at": str, "reason": str}, pk="id")
    db.table("approvals").create_index(["model", "version", "approver"], unique=True)
    db.table("consumers").create({"id": int, "name": str, "model": str, "reads": str,
                            "contact": str, "webhook": str, "created_at": str}, pk="id")
    db.table("consumers").create_index(["name", "model"], unique=True)
    db.table("holds").create({"id": int, "model": str, "version": str, "holder": str, "reason": str,
                        "at": str, "released_at": str, "released_by": str}, pk="id")
    db.table("retention_policies").create({"id": int, "scope": str, "target": str,
                                     "keep_deprecated": int, "delete_archived_after_days": int,
                                     "created_at": str}, pk="id")
    db.table("retention_policies").create_index(["scope", "target"], unique=True)
    db.table("notices").create({"id": int, "consumer": str, "model": str, "version": str,
                          "kind": str, "at": str, "detail": str, "delivered": int}, pk="id")
    # one row, bumped by every write that changes what should be served; the server polls it
    db.table("registry_state").create({"id": int, "generation": int}, pk="id")
    db.execute("INSERT INTO registry_state (id, generation) VALUES (1, 0)")


def _m004_security(db: sqlite_utils.Database) -> None:
    """The CycloneDX SBOM of each version, and weight fingerprints per variant."""
    db.execute("ALTER TABLE versions ADD COLUMN sbom TEXT")
    # IF NOT EXISTS: boxes that ran the fingerprint module before this migration have it
    db.execute("CREATE TABLE IF NOT EXISTS fingerprints (digest TEXT NOT NULL, model TEXT NOT "
               "NULL, version TEXT NOT NULL, format TEXT NOT NULL, precision TEXT NOT NULL "
               "DEFAULT 'fp32', tensors INTEGER NOT NULL DEFAULT 0, created_at TEXT NOT NULL)")
    db.execute("CREATE UNIQUE INDEX IF NOT EXISTS fingerprints_variant ON fingerprints "
               "(model, version, precision)")
    db.execute("CREATE INDEX IF NOT EXISTS fingerprints_digest ON fingerprints (digest)")


def _m005_hold_placer_and_webhook_outbox(db: sqlite_utils.Database) -> None:
    """Who placed a hold (the holder is on whose behalf), and the webhook outbox."""
    db.execute("ALTER TABLE holds ADD COLUMN placed_by TEXT")
    db.execute("UPDATE holds SET placed_by = holder WHERE placed_by IS NULL")
    # one row per webhook delivery; drained by the serving process, never by a request
    db.execute("CREATE TABLE webhook_outbox (id INTEGER PRIMARY KEY, notice_id INTEGER, "
               "consumer TEXT NOT NULL, model TEXT NOT NULL, url TEXT NOT NULL, "
               "payload TEXT NOT NULL, created_at TEXT NOT NULL, "
               "status TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, "
               "next_attempt_at TEXT NOT NULL, lease_until TEXT, last_error TEXT, "
               "delivered_at TEXT, gave_up_at TEXT)")
    db.execute("CREATE INDEX webhook_outbox_due ON webhook_outbox (status, next_attempt_at)")


def _m006_routes(db: sqlite_utils.Database) -> None:
    """Routing: one stored route per model (appliance/routing/store.py) and the state a
    route moves through by itself (a canary's step, a bandit's weights)."""
    db.execute("CREATE TABLE routes (model TEXT PRIMARY KEY, spec TEXT NOT NULL, "
               "revision INTEGER NOT NULL, etag TEXT NOT NULL, updated_at TEXT NOT NULL, "
               "updated_by TEXT NOT NULL)")
    db.execute("CREATE TABLE route_state (model TEXT PRIMARY KEY, revision INTEGER NOT NULL, "
               "state TEXT NOT NULL, updated_at TEXT NOT NULL)")
    # the latest shadow report per model, for the CLI (written by the routing thread)
    db.execute("CREATE TABLE route_reports (model TEXT NOT NULL, kind TEXT NOT NULL, "
               "body TEXT NOT NULL, updated_at TEXT NOT NULL, PRIMARY KEY (model, kind))")


MIGRATIONS: list[tuple[int, str, Migration]] = [
    (1, "models, versions, events", _m001_models_and_versions),
    (2, "variants and backend pin", _m002_variants_and_backend_pin),
    (3, "lifecycle: packages, stages, approvals, consumers, holds, retention", _m003_lifecycle),
    (4, "security: sbom column, fingerprints", _m004_security),
    (5, "hold placed_by, webhook outbox", _m005_hold_placer_and_webhook_outbox),
    (6, "routes and route state", _m006_routes),
]


def bump_generation(db: sqlite_utils.Database) -> None:
    """Call inside a write transaction that changes what should be served."""
    db.execute("UPDATE registry_state SET generation = generation + 1 WHERE id = 1")


def generation(db: sqlite_utils.Database) -> int:
    row = db.execute("SELECT generation FROM registry_state WHERE id = 1").fetchone()
    return int(row[0]) if row else 0


@contextmanager
def transaction(db: sqlite_utils.Database) -> Iterator[sqlite_utils.Database]:
    """One write transaction: all of it commits or none of it does.

    Use raw ``db.execute`` inside: sqlite-utils' insert helpers commit on their own.
    """
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def now() -> str:
    """UTC time as an ISO 8601 string with microseconds."""
    return datetime.now(UTC).isoformat(timespec="microseconds")


def parse_time(value: str | date | datetime) -> datetime:
    """An ISO 8601 date or date-time (or a ``date``/``datetime``) as an aware datetime,
    its offset kept; none given means UTC. ValueError when ``value`` is not one.

    The one parser of times read from the registry, settings and command lines; callers
    turn the ValueError into their own error (400, a config error, a usage error)."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        parsed = datetime.fromisoformat(value.strip())
    else:
        raise ValueError(f"{value!r} is not an ISO 8601 date or time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def open_database(path: Path) -> sqlite_utils.Database:
    """Open (creating) the registry at ``path`` in WAL mode and apply pending migrations."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None,
                           timeout=30)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    db = sqlite_utils.Database(conn)
    migrate(db)
    return db


def migrate(db: sqlite_utils.Database) -> list[int]:
    """Apply the migrations not yet recorded; return the numbers applied."""
    if "_migrations" not in db.table_names():
        db.table("_migrations").create({"number": int, "name": str, "applied_at": str}, pk="number")
    done = {row["number"] for row in db["_migrations"].rows}
    applied = []
    for number, name, fn in MIGRATIONS:
        if number in done:
            continue
        with transaction(db):
            fn(db)
            db.execute("INSERT INTO _migrations (number, name, applied_at) VALUES (?, ?, ?)",
                       [number, name, now()])
        applied.append(number)
    return applied
