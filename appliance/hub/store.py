"""The hub's data access: every query the hub makes, through SQLAlchemy Core.

Nothing else in :mod:`appliance.hub` writes SQL; services open a transaction here and
call these functions with its connection, so one operator command (its change and its
audit record) commits or rolls back as a whole. The engine comes from a URL:
``sqlite:///DIR/hub.db`` by default (WAL, foreign keys on, writers ``BEGIN IMMEDIATE``
so several processes can write one file), or a PostgreSQL URL when one machine is not
enough; the SQL below is portable Core, and ``(device_id, seq)`` uniqueness is the
database's own primary key, not a check in Python.

    store = HubStore.for_directory(Path("hub"))
    with store.write() as conn:
        add_group(conn, name="lab", description="", at=now_iso(), by="ops")
    with store.read() as conn:
        rows = list_devices(conn, group="lab")
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec
from sqlalchemy import Connection, Engine, create_engine, event, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from ..audit.records import canonical_json
from ..errors import ConfigError
from .schema import (
    MIGRATIONS,
    SCHEMA_VERSION,
    assignments,
    audit,
    devices,
    enrolment_tokens,
    groups,
    hub_schema,
    lost_reports,
    metadata,
    package_keys,
    packages,
    reports,
)

HUB_DB = "hub.db"
_JSON_COLUMNS = ("hardware", "installed", "health", "audit_witness")


def default_url(directory: Path) -> str:
    """The SQLite URL of the hub database in ``directory``."""
    return f"sqlite:///{(directory / HUB_DB).resolve()}"


def _sqlite_setup(engine: Engine) -> None:
    """WAL, foreign keys, a busy timeout, and transactions that SQLAlchemy begins itself
    (pysqlite's implicit BEGIN would make SAVEPOINT and BEGIN IMMEDIATE impossible)."""

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        for pragma in ("journal_mode=WAL", "foreign_keys=ON", "busy_timeout=10000",
                       "synchronous=NORMAL"):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("hub_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")


class HubStore:
    """The hub database: an engine, its schema migrated on open, and transactions."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = create_engine(url)
        self._writer = self.engine
        if self.engine.dialect.name == "sqlite":
            _sqlite_setup(self.engine)
            self._writer = self.engine.execution_options(hub_begin="IMMEDIATE")
        self._migrate()

    @classmethod
    def for_directory(cls, directory: Path, url: str | None = None) -> HubStore:
        """The store of the hub in ``directory`` (``url`` overrides the SQLite default)."""
        return cls(url or default_url(directory))

    def close(self) -> None:
        self.engine.dispose()

    @contextlib.contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for queries (a read transaction, rolled back at the end)."""
        with self.engine.connect() as conn:
            yield conn

    @contextlib.contextmanager
    def write(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with self._writer.begin() as conn:
            yield conn

    def _migrate(self) -> None:
        with self.write() as conn:
            metadata.create_all(conn, tables=[hub_schema])
            found = conn.execute(select(hub_schema.c.version)).scalar()
            if found is None:
                metadata.create_all(conn)
                conn.execute(insert(hub_schema).values(version=SCHEMA_VERSION))
                return
            if found > SCHEMA_VERSION:
                raise ConfigError(f"the hub database {self.url} has schema version {found}, "
                                  f"newer than this appliance knows ({SCHEMA_VERSION}): "
                                  "upgrade the appliance package on the hub")
            for version, statements in MIGRATIONS:
                if version > found:
                    for statement in statements:
                        conn.exec_driver_sql(statement)
            metadata.create_all(conn)  # tables a newer version added
            conn.execute(update(hub_schema).values(version=SCHEMA_VERSION))


def dump_json(value: Any) -> str:
    """Canonical JSON text for a JSON column."""
    return canonical_json(value).decode()


def _row(row: Any) -> dict[str, Any]:
    out = dict(row._mapping)
    for name in _JSON_COLUMNS:
        if isinstance(out.get(name), str):
            out[name] = msgspec.json.decode(out[name])
    return out


# -- groups ------------------------------------------------------------------------------

def add_group(conn: Connection, *, name: str, description: str, at: str, by: str) -> None:
    conn.execute(insert(groups).values(name=name, description=description, created_at=at,
                                       created_by=by))


def get_group(conn: Connection, name: str) -> dict[str, Any] | None:
    row = conn.execute(select(groups).where(groups.c.name == name)).first()
    return _row(row) if row is not None else None


def list_groups(conn: Connection) -> list[dict[str, Any]]:
    """Every group with its number of devices."""
    count = (select(func.count()).select_from(devices)
             .where(devices.c.group_name == groups.c.name).scalar_subquery())
    rows = conn.execute(select(groups, count.label("devices")).order_by(groups.c.name))
    return [_row(r) for r in rows]


# -- enrolment tokens --------------------------------------------------------------------

def add_token(conn: Connection, *, token_sha256: str, group: str, at: str, by: str,
              expires_at: str) -> None:
    conn.execute(insert(enrolment_tokens).values(
        token_sha256=token_sha256, group_name=group, created_at=at, created_by=by,
        expires_at=expires_at))


def get_token(conn: Connection, token_sha256: str) -> dict[str, Any] | None:
    row = conn.execute(select(enrolment_tokens)
                       .where(enrolment_tokens.c.token_sha256 == token_sha256)).first()
    return _row(row) if row is not None else None


def use_token(conn: Connection, token_sha256: str, *, at: str, device_id: str) -> bool:
    """Mark an unused, unexpired token used; False when it was not (one statement, so two
    boxes racing with one token cannot both win)."""
    result = conn.execute(update(enrolment_tokens).where(
        enrolment_tokens.c.token_sha256 == token_sha256, enrolment_tokens.c.used_at.is_(None),
        enrolment_tokens.c.expires_at > at).values(used_at=at, device_id=device_id))
    return result.rowcount == 1


# -- devices -----------------------------------------------------------------------------

def add_device(conn: Connection, **values: Any) -> None:
    for name in _JSON_COLUMNS:
        values[name] = dump_json(values.get(name) or {})
    conn.execute(insert(devices).values(**values))


def get_device(conn: Connection, device_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(devices).where(devices.c.id == device_id)).first()
    return _row(row) if row is not None else None


def device_by_signing_key(conn: Connection, key_id: str) -> dict[str, Any] | None:
    row = conn.execute(select(devices).where(devices.c.signing_key_id == key_id)).first()
    return _row(row) if row is not None else None


def list_devices(conn: Connection, group: str | None = None) -> list[dict[str, Any]]:
    """Devices (of ``group``) with ``stored_above_ack``: their reports stored past the
    contiguous acknowledgement (one query, however many devices)."""
    above = (select(func.count()).select_from(reports)
             .where(reports.c.device_id == devices.c.id, reports.c.seq > devices.c.acked_seq)
             .scalar_subquery())
    query = (select(devices, above.label("stored_above_ack"))
             .order_by(devices.c.group_name, devices.c.id))
    if group is not None:
        query = query.where(devices.c.group_name == group)
    return [_row(r) for r in conn.execute(query)]


def device_ids(conn: Connection, group: str) -> list[str]:
    return list(conn.execute(select(devices.c.id).where(devices.c.group_name == group)
                             .order_by(devices.c.id)).scalars())


def update_device(conn: Connection, device_id: str, **values: Any) -> None:
    """Set columns of one device (JSON columns are encoded here)."""
    for name in _JSON_COLUMNS:
        if name in values:
            values[name] = dump_json(values[name])
    conn.execute(update(devices).where(devices.c.id == device_id).values(**values))


# -- reports -----------------------------------------------------------------------------

def insert_report(conn: Connection, *, device_id: str, seq: int, received_at: str,
                  sent_at: str, body: bytes, signature: str) -> bool:
    """Store a report; False when ``(device_id, seq)`` is already stored (the primary key
    decides, inside a savepoint, so the surrounding transaction carries on)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(reports).values(device_id=device_id, seq=seq,
                                                received_at=received_at, sent_at=sent_at,
                                                body=body, signature=signature))
    except IntegrityError:
        return False
    return True


def get_report(conn: Connection, device_id: str, seq: int) -> dict[str, Any] | None:
    row = conn.execute(select(reports).where(reports.c.device_id == device_id,
                                             reports.c.seq == seq)).first()
    return _row(row) if row is not None else None


def report_seqs_after(conn: Connection, device_id: str, after: int,
                      limit: int = 1000) -> list[int]:
    return list(conn.execute(select(reports.c.seq).where(
        reports.c.device_id == device_id, reports.c.seq > after)
        .order_by(reports.c.seq).limit(limit)).scalars())


def count_reports(conn: Connection, device_id: str, after: int = 0) -> int:
    return int(conn.execute(select(func.count()).select_from(reports).where(
        reports.c.device_id == device_id, reports.c.seq > after)).scalar_one())


def add_lost(conn: Connection, *, device_id: str, first: int, last: int,
             declared_in: int) -> None:
    """Record a range the box says it dropped (a repeated declaration is ignored)."""
    try:
        with conn.begin_nested():
            conn.execute(insert(lost_reports).values(device_id=device_id, first_seq=first,
                                                     last_seq=last, declared_in=declared_in))
    except IntegrityError:
        pass


def lost_after(conn: Connection, device_id: str, after: int) -> list[tuple[int, int]]:
    rows = conn.execute(select(lost_reports.c.first_seq, lost_reports.c.last_seq).where(
        lost_reports.c.device_id == device_id, lost_reports.c.last_seq > after)
        .order_by(lost_reports.c.first_seq))
    return [(int(a), int(b)) for a, b in rows]


# -- packages ----------------------------------------------------------------------------

def add_package(conn: Connection, **values: Any) -> None:
    conn.execute(insert(packages).values(**values))


def get_package(conn: Connection, model: str, version: str) -> dict[str, Any] | None:
    row = conn.execute(select(packages).where(packages.c.model == model,
                                              packages.c.version == version)).first()
    return _row(row) if row is not None else None


def list_packages(conn: Connection, model: str | None = None) -> list[dict[str, Any]]:
    query = select(packages).order_by(packages.c.model, packages.c.published_at)
    if model is not None:
        query = query.where(packages.c.model == model)
    return [_row(r) for r in conn.execute(query)]


def get_package_key(conn: Connection, device_id: str, model: str,
                    version: str) -> str | None:
    return conn.execute(select(package_keys.c.wrap).where(
        package_keys.c.device_id == device_id, package_keys.c.model == model,
        package_keys.c.version == version)).scalar()


def add_package_key(conn: Connection, *, device_id: str, model: str, version: str,
                    wrap: Mapping[str, Any], at: str) -> None:
    conn.execute(insert(package_keys).values(device_id=device_id, model=model,
                                             version=version, wrap=dump_json(dict(wrap)),
                                             created_at=at))


# -- assignments -------------------------------------------------------------------------

def add_assignment(conn: Connection, *, group: str, model: str, version: str, stage: str,
                   by: str, at: str) -> None:
    conn.execute(insert(assignments).values(group_name=group, model=model, version=version,
                                            stage=stage, assigned_by=by, at=at))


def current_assignments(conn: Connection, group: str) -> list[dict[str, Any]]:
    """The newest assignment of each model in ``group``."""
    newest = (select(func.max(assignments.c.id)).where(assignments.c.group_name == group)
              .group_by(assignments.c.model))
    rows = conn.execute(select(assignments).where(assignments.c.id.in_(newest))
                        .order_by(assignments.c.model))
    return [_row(r) for r in rows]


# -- the audit chain ---------------------------------------------------------------------

def audit_head(conn: Connection) -> tuple[int, str] | None:
    """(seq, hash) of the newest audit record, or None for an empty chain."""
    row = conn.execute(select(audit.c.seq, audit.c.hash).order_by(audit.c.seq.desc())
                       .limit(1)).first()
    return (int(row[0]), str(row[1])) if row is not None else None


def insert_audit(conn: Connection, **values: Any) -> None:
    conn.execute(insert(audit).values(**values))


def audit_rows(conn: Connection, after: int = 0, limit: int = 1000) -> list[dict[str, Any]]:
    rows = conn.execute(select(audit).where(audit.c.seq > after).order_by(audit.c.seq)
                        .limit(limit))
    return [_row(r) for r in rows]
