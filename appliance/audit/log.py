"""The append-only, hash-chained audit log in ``<data_dir>/audit.db`` (SQLite, WAL).

Each row of ``records`` carries the hash of the row before it::

    hash = sha256(prev_hash || envelope).hexdigest()
    envelope = {"actor":A,"at":T,"body":B,"kind":K,"seq":N}

``prev_hash`` is the previous record's ``hash`` as 64 ASCII hex digits (``GENESIS``, 64
zeros, before the first record; after a prune, the tombstone's ``hash_of_last_pruned``).
The envelope is canonical JSON: UTF-8, keys sorted by code point, no whitespace, strings
escaped minimally (``"``, ``\\``, control characters; other characters written as UTF-8:
``json.dumps(s, ensure_ascii=False)`` gives the same bytes) and ``B`` is the stored
``body`` text verbatim, itself canonical JSON of the body object (msgspec with sorted
keys; NaN/Infinity become null). So anyone holding the rows can recompute the chain with
any JSON library, without re-encoding bodies.

Changing, deleting, inserting or reordering a row breaks the chain at that row; a full
rewrite of the tail is caught by signed checkpoints (:mod:`.checkpoints`); a legitimate
removal needs a signed tombstone (:mod:`.retention`). Writes take ``BEGIN IMMEDIATE``:
several processes (server, CLI) can append to one log.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from .records import (
    Entry,
    Record,
    canonical_json,
    encode_str,
    now_iso,
    prepare,
)
from .signing import head_of, make_checkpoint

log = logging.getLogger(__name__)

AUDIT_DB = "audit.db"
SIGNING_KEY_NAME = "audit"
#: a writer's pause between chunks: a real (if tiny) sleep, so a thread waiting for the
#: GIL runs (``sleep(0)`` or a C call that releases it briefly takes it straight back)
YIELD_S = 1e-6

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY, at TEXT NOT NULL, kind TEXT NOT NULL, actor TEXT NOT NULL,
    body TEXT NOT NULL, prev_hash TEXT NOT NULL, hash TEXT NOT NULL);
-- writer lifecycle records only: finds the last one without scanning inference rows
CREATE INDEX IF NOT EXISTS records_writer ON records(seq)
    WHERE kind IN ('writer-start', 'writer-stop');
-- registry events copied into the chain (bridge.py finds the last one every tick)
CREATE INDEX IF NOT EXISTS records_model_events ON records(seq)
    WHERE kind >= 'model.' AND kind < 'model/';
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY, kind TEXT NOT NULL, at TEXT NOT NULL, size INTEGER NOT NULL,
    head_hash TEXT NOT NULL, payload TEXT NOT NULL, signature TEXT NOT NULL,
    key_id TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY, holder TEXT NOT NULL, reason TEXT NOT NULL, at TEXT NOT NULL,
    released_at TEXT, released_by TEXT);
"""

Sink = Callable[[Sequence[Record]], None]
_COLUMNS = "seq, at, kind, actor, body, prev_hash, hash"
# One statement for a whole batch: Python's sqlite3 releases the GIL around every
# sqlite3_step, so executemany hands the GIL to the event loop (a context switch on a
# shared core) once per row; json_each inserts the batch in one step.
_INSERT_BATCH = (f"INSERT INTO records ({_COLUMNS}) SELECT value->>0, value->>1, value->>2, "
                 "value->>3, value->>4, value->>5, value->>6 FROM json_each(?)")
_ROWS = msgspec.json.Encoder()


def _insert(conn: sqlite3.Connection, rows: list[tuple[Any, ...]]) -> None:
    """Insert ``rows`` (in ``_COLUMNS`` order) with one statement."""
    if len(rows) == 1:
        conn.execute(f"INSERT INTO records ({_COLUMNS}) VALUES (?,?,?,?,?,?,?)", rows[0])
    elif rows:
        conn.execute(_INSERT_BATCH, (_ROWS.encode(rows).decode(),))


class AuditLog:
    """The audit log of one data directory.

    ``signing_key`` signs checkpoints and tombstones; by default it is the KeyStore's
    ``audit`` key, read on first use (:func:`~appliance.audit.keys.audit_signing_key`
    derives it from a plugin's box key instead). ``verify_keys``: further public keys
    whose older checkpoints verify (the file key, after a switch to a TPM or KMS key).
    ``defer_errors``: a log that cannot be opened (full disk) does not raise here;
    ``open_error`` says why, every write retries. Closing a log written to signs it.
    """

    def __init__(self, data_dir: Path, signing_key: Ed25519PrivateKey | None = None, *,
                 defer_errors: bool = False, verify_keys: Sequence[Ed25519PublicKey] = ()
                 ) -> None:
        self.data_dir = Path(data_dir)
        self.path = self.data_dir / AUDIT_DB
        self._signing_key = signing_key
        self._verify_keys = list(verify_keys)
        self._lock = threading.Lock()
        self._sinks: list[Sink] = []
        self._conn: sqlite3.Connection | None = None
        self._wrote = False
        #: why the log could not be opened (``defer_errors``); None once it is open
        self.open_error: Exception | None = None
        try:
            self._connection()
        except (OSError, sqlite3.Error) as exc:
            if not defer_errors:
                raise
            self.open_error = exc

    def ensure_open(self) -> None:  # raises when it cannot be opened
        self._connection()

    def _connection(self) -> sqlite3.Connection:
        """The writing connection, opened (and the schema made) on first use: a log that
        could not be opened at start (a full disk) is retried by the next write."""
        if self._conn is None:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            if not self.path.exists():  # the log is evidence: owner-only, like the keys
                with contextlib.suppress(FileExistsError):
                    os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            conn = sqlite3.connect(str(self.path), check_same_thread=False,
                                   isolation_level=None, timeout=30)
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("PRAGMA synchronous=FULL")
                conn.executescript(_SCHEMA)
            except BaseException:
                conn.close()
                raise
            self._conn, self.open_error = conn, None
        return self._conn

    # -- keys ------------------------------------------------------------------------
    @property
    def signing_key(self) -> Ed25519PrivateKey:
        if self._signing_key is None:
            from ..security.keys import KeyStore

            self._signing_key = KeyStore(self.data_dir).signing_key(SIGNING_KEY_NAME)
        return self._signing_key

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self.signing_key.public_key()

    @property
    def public_keys(self) -> list[Ed25519PublicKey]:
        """Keys whose signatures verify: the signing key's first, then ``verify_keys``."""
        return [self.public_key, *self._verify_keys]

    # -- sinks -----------------------------------------------------------------------
    def add_sink(self, sink: Sink) -> None:
        """Call ``sink(records)`` after every commit (from the appending thread: a sink
        must only enqueue). A sink that raises is logged and kept."""
        self._sinks.append(sink)

    # -- writing ---------------------------------------------------------------------
    def append(self, kind: str, actor: str, body: Mapping[str, Any] | None = None, *,
               at: str | None = None) -> int:
        """Append one record in its own transaction; return its sequence number."""
        return self.append_many([Entry(kind, actor, body or {}, at)])[-1]

    def append_many(self, entries: Iterable[Entry | tuple[Any, ...]]) -> list[int]:
        """Append records in one transaction; return their sequence numbers."""
        return [r.seq for r in self.write(entries)]

    def write(self, entries: Iterable[Entry | tuple[Any, ...]],
              also: Callable[[sqlite3.Connection, int, str], None] | None = None
              ) -> list[Record]:
        """Append ``entries`` in one transaction and notify the sinks.

        ``also(conn, head_seq, head_hash)`` runs first inside the same transaction, for
        writes that must commit with the records (a prune and its tombstone); it may
        still fill in the entries' bodies, which are encoded after it."""
        prepared = [prepare(Entry(*e)) for e in entries]
        if also is None:  # encoded before taking the lock
            return self.write_encoded([(e.at, e.kind, e.actor, canonical_json(e.body).decode())
                                       for e in prepared])

        def fill(conn: sqlite3.Connection, seq: int, head: str) -> None:
            also(conn, seq, head)
            items[:] = [(e.at, e.kind, e.actor, canonical_json(e.body).decode())
                        for e in prepared]

        items: list[tuple[str | None, str, str, str]] = []
        return self.write_encoded(items, also=fill)

    def write_encoded(self, items: list[tuple[str | None, str, str, str]], *,
                      also: Callable[[sqlite3.Connection, int, str], None] | None = None,
                      yield_every: int = 0, records: bool = True) -> list[Record]:
        """Append checked, encoded ``(at, kind, actor, body_json)`` items (the writer's
        path) in one transaction; notify the sinks; return the records (``[]`` when
        ``records`` is false and no sink needs them). ``yield_every``: sleep
        ``YIELD_S`` after each such chunk, so requests do not wait a whole batch."""
        self._wrote = True
        with self._lock:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE")
            try:
                seq, prev = head_of(conn)
                if also is not None:
                    also(conn, seq, prev)
                    seq, prev = head_of(conn)
                stamp, rows = now_iso(), []
                sha256, enc, step = hashlib.sha256, encode_str, yield_every or len(items)
                for start in range(0, len(items), step or 1):
                    chunk = []  # hashed and inserted per chunk, then the GIL is given up
                    for at, kind, actor, body in items[start:start + step]:
                        seq += 1
                        at = at or stamp
                        # envelope() inlined: this loop is the writer's throughput
                        digest = sha256(b"".join((
                            prev.encode(), b'{"actor":', enc(actor), b',"at":', enc(at),
                            b',"body":', body.encode(), b',"kind":', enc(kind), b',"seq":',
                            str(seq).encode(), b"}"))).hexdigest()
                        chunk.append((seq, at, kind, actor, body, prev, digest))
                        prev = digest
                    rows += chunk
                    if yield_every:
                        time.sleep(YIELD_S)
                _insert(conn, rows)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
        committed = [Record(*row) for row in rows] if self._sinks or records else []
        if committed and self._sinks:
            self._notify(committed)
        return committed

    def _notify(self, records: list[Record]) -> None:
        for sink in list(self._sinks):
            try:
                sink(records)
            except Exception:  # a broken sink must never fail an audited action
                log.exception("audit sink %r failed", sink)

    # -- reading ---------------------------------------------------------------------
    @contextlib.contextmanager
    def reader(self) -> Iterator[sqlite3.Connection]:
        """A connection of its own, for long reads (verify, export) beside the writers."""
        conn = sqlite3.connect(str(self.path), isolation_level=None, timeout=30)
        try:
            yield conn
        finally:
            conn.close()

    def head(self) -> tuple[int, str]:
        """(last sequence number, its hash); (0, GENESIS) for an empty log."""
        with self.reader() as conn:
            return head_of(conn)

    def last(self) -> Record | None:
        """The newest record."""
        with self.reader() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM records ORDER BY seq DESC LIMIT 1"
                               ).fetchone()
        return Record(*row) if row else None

    def last_writer_record(self) -> Record | None:
        """The newest ``writer-start`` or ``writer-stop`` record (crash detection)."""
        with self.reader() as conn:
            row = conn.execute(f"SELECT {_COLUMNS} FROM records WHERE kind IN "
                               "('writer-start', 'writer-stop') ORDER BY seq DESC LIMIT 1"
                               ).fetchone()
        return Record(*row) if row else None

    def records(self, *, since: str | None = None, until: str | None = None,
                after_seq: int = 0, kinds: Sequence[str] | None = None) -> Iterator[Record]:
        """Records in sequence order, ``since <= at < until`` (ISO strings)."""
        sql = f"SELECT {_COLUMNS} FROM records WHERE seq > ?"
        args: list[Any] = [after_seq]
        if since is not None:
            sql, args = sql + " AND at >= ?", [*args, since]
        if until is not None:
            sql, args = sql + " AND at < ?", [*args, until]
        if kinds:
            sql += f" AND kind IN ({','.join('?' * len(kinds))})"
            args += list(kinds)
        with self.reader() as conn:
            cursor = conn.execute(sql + " ORDER BY seq", args)
            while rows := cursor.fetchmany(2000):
                for row in rows:
                    yield Record(*row)

    def close(self, *, checkpoint: bool = True) -> None:
        """Close; sign the head first if this instance appended records."""
        if checkpoint and self._wrote and self._conn is not None:
            try:
                make_checkpoint(self)
            except Exception as exc:  # a full disk: the next writer signs
                log.warning("audit log %s: final checkpoint not signed: %s", self.path, exc)
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
