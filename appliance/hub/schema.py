"""The hub database's tables (SQLAlchemy Core) and its versioned migrations.

Tables, shaped for staged rollouts and fleet scale (every lookup a box or an operator
makes is by device or by group, and each has its index):

    hub_schema        the schema version (one row)
    groups            name, description, created_at, created_by
    devices           id, group, Ed25519 signing key, X25519 encryption key, enrolled_at,
                      last_seen, hardware profile, installed versions, health, stale_since,
                      the highest report seq stored and the highest contiguous one, the
                      witnessed head of the box's audit chain
    enrolment_tokens  sha256 of the token only, group, expires_at, used_at, device
    packages          model, version, target path, sha256/size of the target and of the
                      plaintext package, publisher key, the encryption header
    package_keys      the package data key wrapped to one device's X25519 key
    assignments       group, model, version, stage, assigned_by, at (append-only history:
                      the current assignment of a (group, model) is its newest row)
    reports           (device_id, seq) primary key: each report stored exactly once
    lost_reports      sequence ranges a box dropped from its outbox (its gap records)
    audit             the operator audit chain (see :mod:`.audit_chain`)
    rollouts          staged rollouts of one package version to groups (:mod:`.rollouts`):
                      target, wave plan, success and abort criteria, status, current wave
    rollout_devices   the boxes a rollout took in: wave, bucket, state (pending, succeeded,
                      failed), failure type, and whether the box is told the new version

Timestamps are ISO 8601 UTC text with microseconds (``appliance.audit.records.now_iso``):
they compare as strings on SQLite and PostgreSQL alike. JSON columns hold text written by
the store, so what is hashed or signed is never re-encoded by a driver.

Migrations: :data:`MIGRATIONS` is a tuple of ``(version, statements)``; version 1 is
``metadata.create_all``; a later version appends its ``ALTER``/``CREATE`` statements.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

_NAME = 128
_AT = 40
_HEX = 64

hub_schema = Table(
    "hub_schema", metadata,
    Column("version", Integer, nullable=False),
)

groups = Table(
    "groups", metadata,
    Column("name", String(_NAME), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", String(_AT), nullable=False),
    Column("created_by", String(256), nullable=False),
)

devices = Table(
    "devices", metadata,
    Column("id", String(_NAME), primary_key=True),
    Column("group_name", String(_NAME), ForeignKey("groups.name"), nullable=False),
    Column("signing_key", Text, nullable=False),  # Ed25519 public key, PEM
    Column("signing_key_id", String(_HEX), nullable=False, unique=True),
    Column("encryption_key", Text, nullable=False),  # X25519 public key, PEM
    Column("encryption_key_id", String(_HEX), nullable=False),
    Column("enrolled_at", String(_AT), nullable=False),
    Column("last_seen", String(_AT)),
    Column("hardware", Text, nullable=False, default="{}"),
    Column("installed", Text, nullable=False, default="{}"),
    Column("health", Text, nullable=False, default="{}"),
    Column("stale_since", String(_AT)),
    #: the highest report seq stored; its body is the device's current state
    Column("last_seq", BigInteger, nullable=False, default=0),
    #: every seq up to this one is stored (or was declared lost by the box)
    Column("acked_seq", BigInteger, nullable=False, default=0),
    #: the head of the box's audit chain the hub witnessed (:mod:`.audit_witness`), JSON
    Column("audit_witness", Text, nullable=False, default="{}"),
    Index("devices_group", "group_name", "id"),
)

enrolment_tokens = Table(
    "enrolment_tokens", metadata,
    Column("token_sha256", String(_HEX), primary_key=True),
    Column("group_name", String(_NAME), ForeignKey("groups.name"), nullable=False),
    Column("created_at", String(_AT), nullable=False),
    Column("created_by", String(256), nullable=False),
    Column("expires_at", String(_AT), nullable=False),
    Column("used_at", String(_AT)),
    Column("device_id", String(_NAME)),
)

packages = Table(
    "packages", metadata,
    Column("model", String(_NAME), primary_key=True),
    Column("version", String(_NAME), primary_key=True),
    Column("target_path", Text, nullable=False),
    Column("target_sha256", String(_HEX), nullable=False),  # the encrypted target
    Column("target_size", BigInteger, nullable=False),
    Column("package_sha256", String(_HEX), nullable=False),  # the plaintext .tar
    Column("package_size", BigInteger, nullable=False),
    Column("manifest_sha256", String(_HEX), nullable=False),  # the package digest
    Column("publisher", String(256), nullable=False),
    Column("publisher_key_id", String(_HEX), nullable=False),
    Column("header", Text, nullable=False),  # the encryption header of the target, JSON
    Column("published_at", String(_AT), nullable=False),
    Column("published_by", String(256), nullable=False),
)

package_keys = Table(
    "package_keys", metadata,
    Column("device_id", String(_NAME), ForeignKey("devices.id"), primary_key=True),
    Column("model", String(_NAME), primary_key=True),
    Column("version", String(_NAME), primary_key=True),
    Column("wrap", Text, nullable=False),  # JSON: X25519-HKDF-SHA256-A256GCM key wrap
    Column("created_at", String(_AT), nullable=False),
)

assignments = Table(
    "assignments", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("group_name", String(_NAME), ForeignKey("groups.name"), nullable=False),
    Column("model", String(_NAME), nullable=False),
    Column("version", String(_NAME), nullable=False),
    Column("stage", String(32), nullable=False),
    Column("assigned_by", String(256), nullable=False),
    Column("at", String(_AT), nullable=False),
    Index("assignments_group_model", "group_name", "model", "id"),
)

reports = Table(
    "reports", metadata,
    Column("device_id", String(_NAME), ForeignKey("devices.id"), primary_key=True),
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("received_at", String(_AT), nullable=False),
    Column("sent_at", String(_AT), nullable=False),
    Column("body", LargeBinary, nullable=False),  # the exact bytes the device signed
    Column("signature", Text, nullable=False),  # base64 Ed25519 signature over body
)

lost_reports = Table(
    "lost_reports", metadata,
    Column("device_id", String(_NAME), ForeignKey("devices.id"), primary_key=True),
    Column("first_seq", BigInteger, primary_key=True, autoincrement=False),
    Column("last_seq", BigInteger, nullable=False),
    Column("declared_in", BigInteger, nullable=False),  # the seq of the gap record
)

audit = Table(
    "audit", metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("at", String(_AT), nullable=False),
    Column("actor", String(256), nullable=False),
    Column("action", String(64), nullable=False),
    Column("detail", Text, nullable=False),  # canonical JSON
    Column("prev_hash", String(_HEX), nullable=False),
    Column("hash", String(_HEX), nullable=False),
)

rollouts = Table(
    "rollouts", metadata,
    Column("id", String(_NAME), primary_key=True),
    Column("model", String(_NAME), nullable=False),
    Column("version", String(_NAME), nullable=False),
    Column("stage", String(32), nullable=False),
    Column("groups", Text, nullable=False),  # JSON list of group names
    Column("percent", Float, nullable=False),  # share of the groups' boxes targeted
    Column("plan", Text, nullable=False),  # JSON: the waves (explicit or exponential)
    Column("success", Text, nullable=False),  # JSON: criteria to advance a wave
    Column("abort", Text, nullable=False),  # JSON: criteria that halt the rollout
    Column("timeout_s", Integer, nullable=False),  # a box not done by then: timed_out
    Column("status", String(32), nullable=False),
    Column("wave", Integer, nullable=False, default=-1),  # the newest started wave
    Column("wave_started_at", String(_AT)),
    Column("previous", Text, nullable=False),  # JSON: each group's assignment before
    Column("reason", Text, nullable=False, default="{}"),  # JSON: why it halted/stopped
    Column("requires_approval", Integer, nullable=False, default=0),
    Column("approved_by", String(256)),
    Column("approved_at", String(_AT)),
    Column("created_by", String(256), nullable=False),
    Column("created_at", String(_AT), nullable=False),
    Column("updated_at", String(_AT), nullable=False),
    #: reports naming this rollout from boxes it did not take in (ignored)
    Column("ignored_reports", BigInteger, nullable=False, default=0),
    #: bumped by every decision, so two hub processes never both make one
    Column("revision", BigInteger, nullable=False, default=0),
    Index("rollouts_model_status", "model", "status"),
)

rollout_devices = Table(
    "rollout_devices", metadata,
    Column("rollout_id", String(_NAME), ForeignKey("rollouts.id"), primary_key=True),
    Column("device_id", String(_NAME), ForeignKey("devices.id"), primary_key=True),
    Column("wave", Integer, nullable=False),
    Column("bucket", Float, nullable=False),
    Column("state", String(16), nullable=False),  # pending | succeeded | failed
    Column("failure_type", String(32)),
    Column("detail", Text, nullable=False, default=""),
    #: 1: the box's desired state names the rollout's version; 0: its previous one
    Column("desired", Integer, nullable=False, default=1),
    Column("included_at", String(_AT), nullable=False),
    Column("updated_at", String(_AT), nullable=False),
    Index("rollout_devices_device", "device_id", "rollout_id"),
    Index("rollout_devices_state", "rollout_id", "state"),
)

#: (version, statements run to reach it from the version before); 1 is create_all
MIGRATIONS: tuple[tuple[int, tuple[str, ...]], ...] = (
    (1, ()),
    (2, ("ALTER TABLE devices ADD COLUMN audit_witness TEXT NOT NULL DEFAULT '{}'",)),
    (3, ()),  # rollouts, rollout_devices: new tables, made by create_all
)
SCHEMA_VERSION = MIGRATIONS[-1][0]
