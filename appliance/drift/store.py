"""``<data_dir>/drift.db``: references, configurations, window results, feedback, KPIs.

Its own SQLite file (WAL), apart from ``registry.db``: drift writes (one row per model
per window, feedback, KPI points) never contend with registry transactions. Every write
is one transaction, so a crash leaves a whole row or none; a connection is opened per
call, so the evaluator thread, API worker threads and the CLI never share one. The
schema version is SQLite's ``user_version``; :data:`MIGRATIONS` bring an older file up.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from .config import DriftConfig
from .reference import Reference

MIGRATIONS: tuple[str, ...] = ("""
CREATE TABLE drift_references (model TEXT PRIMARY KEY, data BLOB NOT NULL,
    source TEXT NOT NULL, created_at REAL NOT NULL);
CREATE TABLE drift_configs (model TEXT PRIMARY KEY, config TEXT NOT NULL,
    updated_at REAL NOT NULL);
CREATE TABLE drift_results (id INTEGER PRIMARY KEY AUTOINCREMENT, model TEXT NOT NULL,
    window_start REAL NOT NULL, window_end REAL NOT NULL, status TEXT NOT NULL,
    result TEXT NOT NULL);
CREATE INDEX drift_results_model ON drift_results (model, id);
CREATE TABLE feedback (id INTEGER PRIMARY KEY AUTOINCREMENT, request_id TEXT NOT NULL,
    model TEXT NOT NULL, version TEXT NOT NULL, predicted TEXT NOT NULL, label TEXT,
    reward REAL, correct REAL, rows INTEGER NOT NULL, requested_at REAL NOT NULL,
    received_at REAL NOT NULL);
CREATE INDEX feedback_model_time ON feedback (model, requested_at);
CREATE INDEX feedback_request ON feedback (request_id);
CREATE TABLE kpi_points (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
    time REAL NOT NULL, value REAL NOT NULL);
CREATE INDEX kpi_points_name_time ON kpi_points (name, time);
""",)


class DriftStore:
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                db.executescript(f"BEGIN;\n{script}\nPRAGMA user_version={number};\nCOMMIT;")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            db.execute("PRAGMA busy_timeout=30000")
            db.execute("PRAGMA synchronous=NORMAL")
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    # -- references and configurations ---------------------------------------------------
    def put_reference(self, model: str, reference: Reference, at: float) -> None:
        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO drift_references VALUES (?, ?, ?, ?)",
                       (model, reference.to_bytes(), reference.source, at))

    def reference(self, model: str) -> Reference | None:
        with self._connect() as db:
            row = db.execute("SELECT data FROM drift_references WHERE model = ?",
                             (model,)).fetchone()
        return Reference.from_bytes(row[0]) if row else None

    def referenced_models(self) -> list[str]:
        with self._connect() as db:
            return [r[0] for r in db.execute("SELECT model FROM drift_references")]

    def put_config(self, model: str, config: DriftConfig, at: float) -> None:
        import msgspec

        with self._transaction() as db:
            db.execute("INSERT OR REPLACE INTO drift_configs VALUES (?, ?, ?)",
                       (model, msgspec.json.encode(config).decode(), at))

    def config(self, model: str) -> DriftConfig | None:
        import msgspec

        with self._connect() as db:
            row = db.execute("SELECT config FROM drift_configs WHERE model = ?",
                             (model,)).fetchone()
        return msgspec.json.decode(row[0], type=DriftConfig) if row else None

    # -- window results ------------------------------------------------------------------
    def add_result(self, model: str, result: dict[str, Any], keep: int) -> None:
        """Store one window's result and drop the model's oldest beyond ``keep``."""
        with self._transaction() as db:
            db.execute("INSERT INTO drift_results (model, window_start, window_end, status, "
                       "result) VALUES (?, ?, ?, ?, ?)",
                       (model, result["window"]["start"], result["window"]["end"],
                        result["status"], json.dumps(result, sort_keys=True)))
            db.execute("DELETE FROM drift_results WHERE model = ? AND id <= (SELECT id FROM "
                       "drift_results WHERE model = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
                       (model, model, keep))

    def results(self, model: str, limit: int = 100) -> list[dict[str, Any]]:
        """The model's newest ``limit`` window results, oldest first."""
        with self._connect() as db:
            rows = db.execute("SELECT result FROM drift_results WHERE model = ? ORDER BY id "
                              "DESC LIMIT ?", (model, limit)).fetchall()
        return [json.loads(r[0]) for r in reversed(rows)]

    def monitored_models(self) -> list[str]:
        with self._connect() as db:
            return [r[0] for r in db.execute(
                "SELECT model FROM drift_references UNION SELECT DISTINCT model FROM "
                "drift_results ORDER BY 1")]

    # -- feedback ------------------------------------------------------------------------
    def add_feedback(self, row: dict[str, Any]) -> int:
        with self._transaction() as db:
            cursor = db.execute(
                "INSERT INTO feedback (request_id, model, version, predicted, label, reward, "
                "correct, rows, requested_at, received_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, "
                "?)",
                (row["request_id"], row["model"], row["version"], json.dumps(row["predicted"]),
                 None if row.get("label") is None else json.dumps(row["label"]),
                 row.get("reward"), row.get("correct"), row["rows"], row["requested_at"],
                 row["received_at"]))
            return int(cursor.lastrowid or 0)

    def feedback(self, *, model: str | None = None, request_id: str | None = None,
                 limit: int = 100) -> list[dict[str, Any]]:
        """Stored feedback (labels and rewards), newest first."""
        where, args = [], []
        if model is not None:
            where.append("model = ?")
            args.append(model)
        if request_id is not None:
            where.append("request_id = ?")
            args.append(request_id)
        sql = ("SELECT id, request_id, model, version, predicted, label, reward, correct, "
               "rows, requested_at, received_at FROM feedback"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY id DESC "
               "LIMIT ?")
        with self._connect() as db:
            rows = db.execute(sql, (*args, limit)).fetchall()
        keys = ("id", "request_id", "model", "version", "predicted", "label", "reward",
                "correct", "rows", "requested_at", "received_at")
        out = []
        for r in rows:
            item = dict(zip(keys, r, strict=True))
            item["predicted"] = json.loads(item["predicted"])
            item["label"] = None if item["label"] is None else json.loads(item["label"])
            out.append(item)
        return out

    def realised_accuracy(self, model: str, start: float, end: float
                          ) -> tuple[int, float | None]:
        """Labelled rows of requests answered in ``[start, end)``: count, accuracy."""
        with self._connect() as db:
            n, right = db.execute(
                "SELECT SUM(rows), SUM(correct * rows) FROM feedback WHERE model = ? AND "
                "requested_at >= ? AND requested_at < ? AND correct IS NOT NULL",
                (model, start, end)).fetchone()
        return int(n or 0), (float(right) / n if n else None)

    # -- KPIs ----------------------------------------------------------------------------
    def add_kpis(self, points: Sequence[tuple[str, float, float]]) -> None:
        with self._transaction() as db:
            db.executemany("INSERT INTO kpi_points (name, time, value) VALUES (?, ?, ?)",
                           points)

    def kpi_points(self, name: str, start: float, end: float) -> list[tuple[float, float]]:
        with self._connect() as db:
            return [(float(t), float(v)) for t, v in db.execute(
                "SELECT time, value FROM kpi_points WHERE name = ? AND time >= ? AND "
                "time < ? ORDER BY time, id", (name, start, end))]
