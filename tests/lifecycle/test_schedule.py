"""Scheduled promotions: the CLI, the release calendar (.ics), persistence across restarts."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import appliance_onnxruntime
import pytest
from helpers import unsigned_config
from helpers.models import scale_model

from appliance.lifecycle import schedule
from appliance.packages.importer import import_model
from appliance.plugins import get_plugin_manager
from appliance.registry import Registry
from appliance.runtime.catalog import BackendCatalog

# imports the CLI module too, in case `appliance.cli` does not register it yet
CLI = "from appliance.cli import main, schedule; main()"


def probe(path: str) -> None:
    """A job for persistence tests: record when it ran (importable as test_schedule:probe)."""
    Path(path).write_text(datetime.now(UTC).isoformat())


def run(*args: str, data_dir: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir),
           "APPLIANCE_CONFIG": str(unsigned_config(Path(data_dir).parent))}
    env.pop("APPLIANCE_CONFIG", None)
    return subprocess.run([sys.executable, "-c", CLI, *args], env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.fixture
def data_dir(tmp_path) -> Path:
    """A registry holding model ``m`` version ``1`` (stage registered)."""
    d = tmp_path / "var"
    registry = Registry(d)
    try:
        catalog = BackendCatalog(get_plugin_manager(autoload=False,
                                                    extra=(appliance_onnxruntime,)))
        import_model(registry, catalog, scale_model(tmp_path / "m.onnx", 2.0), name="m",
                     created_by="test")
    finally:
        registry.close()
    return d


def events(data_dir: Path, action: str) -> list[dict]:
    registry = Registry(data_dir)
    try:
        rows = registry.db.execute("SELECT actor, model, version, detail FROM events "
                                   "WHERE action = ? ORDER BY id", [action]).fetchall()
    finally:
        registry.close()
    return [{"actor": a, "model": m, "version": v, "detail": json.loads(d)}
            for a, m, v, d in rows]


def wait_for(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def unescape(text: str) -> str:
    return re.sub(r"\\([\\;,nN])", lambda m: "\n" if m[1] in "nN" else m[1], text)


def parse_ics(raw: bytes) -> list[tuple[str, str]]:
    """Check the framing (CRLF, 75-octet lines) and return the unfolded (name, value)s."""
    assert raw.endswith(b"\r\n") and b"\n" not in raw.replace(b"\r\n", b"")
    assert all(len(line) <= 75 for line in raw.split(b"\r\n"))
    unfolded = re.sub(r"\r\n[ \t]", "", raw.decode("utf-8"))
    return [tuple(line.split(":", 1)) for line in unfolded.split("\r\n") if line]


def test_promote_at_lists_exports_ics_and_cancels(data_dir, tmp_path):
    soon = (datetime.now(UTC) + timedelta(hours=1)).replace(microsecond=0, tzinfo=None)
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    reason = "weekly release; ships the new calibration, see ticket #42 \\ café " + "x" * 60
    r = run("models", "promote-at", "m", "1", "--to", "shadow", "--at", soon.isoformat(),
            "--by", "alice", "--reason", reason, "--json", data_dir=data_dir)
    assert r.returncode == 0, r.stderr
    first = json.loads(r.stdout)
    assert first["at"] == soon.replace(tzinfo=UTC).isoformat()  # naive = UTC
    plus2 = later.astimezone(timezone(timedelta(hours=2))).isoformat()  # converted to UTC
    r = run("models", "promote-at", "m", "1", "--to", "canary", "--at", plus2,
            data_dir=data_dir)
    assert r.returncode == 0 and "scheduled: promote m 1 to canary" in r.stdout, r.stderr

    ics = tmp_path / "release.ics"
    r = run("models", "schedule", "--json", "--ics", str(ics), data_dir=data_dir)
    assert r.returncode == 0, r.stderr
    listed = json.loads(r.stdout)
    assert [(e["to"], e["at"]) for e in listed] == [
        ("shadow", first["at"]), ("canary", later.isoformat())]
    assert listed[0] == {"id": f"promote:m:1:shadow:{first['at']}", "model": "m",
                         "version": "1", "to": "shadow", "at": first["at"], "actor": "alice",
                         "reason": reason, "emergency_reason": None}

    props = parse_ics(ics.read_bytes())
    assert props[0] == ("BEGIN", "VCALENDAR") and props[-1] == ("END", "VCALENDAR")
    assert ("VERSION", "2.0") in props
    assert ("PRODID", "-//appliance//release calendar//EN") in props
    assert [v for k, v in props if k == "BEGIN"].count("VEVENT") == 2
    assert [v for k, v in props if k == "END"].count("VEVENT") == 2
    assert [v for k, v in props if k == "DTSTART"] == [
        soon.strftime("%Y%m%dT%H%M%SZ"), later.strftime("%Y%m%dT%H%M%SZ")]
    assert unescape(next(v for k, v in props if k == "UID")) == first["id"] + "@appliance"
    description = unescape(next(v for k, v in props if k == "DESCRIPTION"))
    assert "alice" in description and reason in description
    assert next(v for k, v in props if k == "SUMMARY") == "Promote m 1 to shadow"
    assert b"\r\n " in ics.read_bytes()  # the long description was folded

    r = run("models", "schedule-cancel", first["id"], "--by", "bob", data_dir=data_dir)
    assert r.returncode == 0 and "cancelled" in r.stdout, r.stderr
    assert [e["to"] for e in schedule.list_schedule(data_dir)] == ["canary"]
    assert run("models", "schedule-cancel", first["id"], data_dir=data_dir).returncode == 1
    scheduled = events(data_dir, "promotion-scheduled")
    assert [e["detail"]["to"] for e in scheduled] == ["shadow", "canary"]
    assert scheduled[0]["actor"] == "alice" and scheduled[0]["detail"]["reason"] == reason
    assert events(data_dir, "promotion-schedule-cancelled")[0]["actor"] == "bob"


def test_past_time_unknown_version_and_bad_input_are_refused(data_dir):
    past = (datetime.now(UTC) - timedelta(minutes=1)).isoformat()
    r = run("models", "promote-at", "m", "1", "--to", "shadow", "--at", past, data_dir=data_dir)
    assert r.returncode == 1 and "is in the past" in r.stderr and "future" in r.stderr
    future = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    r = run("models", "promote-at", "m", "9", "--to", "shadow", "--at", future, "--json",
            data_dir=data_dir)
    assert r.returncode == 1 and "has no version '9'" in json.loads(r.stdout)["error"]
    r = run("models", "promote-at", "m", "1", "--to", "shadow", "--at", "next tuesday",
            data_dir=data_dir)
    assert r.returncode == 2 and "ISO 8601" in r.stderr
    assert schedule.list_schedule(data_dir) == []
    assert schedule.to_ics([], now=datetime(2026, 1, 1, tzinfo=UTC)).count("VEVENT") == 0


def test_jobs_survive_a_restart_and_jobs_from_other_processes_run(data_dir, tmp_path,
                                                                  monkeypatch, caplog):
    monkeypatch.setattr(schedule, "LATE_AFTER_S", 0.05)
    caplog.set_level(logging.WARNING, logger="appliance.schedule")
    now = datetime.now(UTC)
    due = {"missed": now + timedelta(seconds=0.5), "kept": now + timedelta(seconds=1.2),
           "other": now + timedelta(seconds=1.6)}
    first = schedule.make_scheduler(data_dir)
    first.start()
    for name in ("missed", "kept"):
        first.add_job("test_schedule:probe", "date", run_date=due[name], id=f"probe:{name}",
                      args=[str(tmp_path / name)])
    first.shutdown()  # the box goes down before either is due
    time.sleep(max(0.0, (due["missed"] - datetime.now(UTC)).total_seconds()) + 0.2)

    second = schedule.make_scheduler(data_dir, poll_s=0.2)  # the box comes back
    second.start()
    try:
        # a job added by another process (as the CLI does) while this one runs
        with schedule.job_store(data_dir) as other:
            other.add_job("test_schedule:probe", "date", run_date=due["other"],
                          id="probe:other", args=[str(tmp_path / "other")])
        assert wait_for(lambda: all((tmp_path / n).exists() for n in due), timeout=8)
        assert wait_for(lambda: not second.get_jobs())  # date jobs are gone once run
    finally:
        second.shutdown()
    for name, at in due.items():
        assert datetime.fromisoformat((tmp_path / name).read_text()) >= at, name
    assert any("probe:missed ran late" in r.getMessage() for r in caplog.records)


def test_job_store_does_not_lock_the_registry(data_dir, tmp_path):
    scheduler = schedule.make_scheduler(data_dir)
    scheduler.start()
    registry = Registry(data_dir)
    try:
        assert registry.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        registry.db.conn.execute("BEGIN IMMEDIATE")  # the registry is writing
        at = datetime.now(UTC) + timedelta(hours=1)
        adder = threading.Thread(target=scheduler.add_job, args=["test_schedule:probe"],
                                 kwargs={"trigger": "date", "run_date": at, "id": "probe:x",
                                         "args": [str(tmp_path / "x")]})
        adder.start()
        time.sleep(0.3)
        registry.db.conn.execute("COMMIT")
        adder.join(timeout=10)  # the job store waited for the lock, then wrote
        assert not adder.is_alive() and scheduler.get_job("probe:x") is not None
        started = time.monotonic()
        registry.db.conn.execute("BEGIN IMMEDIATE")  # and does not hold it afterwards
        registry.db.conn.execute("COMMIT")
        assert time.monotonic() - started < 0.5
    finally:
        registry.close()
        scheduler.shutdown()


def test_a_failed_scheduled_promotion_is_recorded_not_raised(data_dir, caplog):
    caplog.set_level(logging.ERROR, logger="appliance.schedule")
    result = schedule.run_scheduled_promotion(str(data_dir), "m", "9", "shadow", "alice",
                                              "r", None)
    assert result is None
    [failed] = events(data_dir, "scheduled-promotion-failed")
    assert failed["actor"] == "alice" and failed["version"] == "9"
    assert failed["detail"]["to"] == "shadow" and failed["detail"]["error"]
    assert any("scheduled promotion of m 9 to shadow failed" in r.getMessage()
               for r in caplog.records)


def test_a_scheduled_promotion_changes_the_stage(data_dir):
    scheduler = schedule.make_scheduler(data_dir, poll_s=0.2)  # the serving process's
    scheduler.start()
    try:
        at = datetime.now(UTC) + timedelta(seconds=2.5)
        r = run("models", "promote-at", "m", "1", "--to", "shadow", "--at", at.isoformat(),
                "--by", "alice", data_dir=data_dir)
        assert r.returncode == 0, r.stderr

        def stage() -> str:
            registry = Registry(data_dir)
            try:
                return registry.version("m", "1").stage
            finally:
                registry.close()

        assert stage() == "registered"
        assert wait_for(lambda: stage() == "shadow", timeout=10)
        assert datetime.now(UTC) >= at
        assert events(data_dir, "scheduled-promotion-failed") == []
        assert wait_for(lambda: schedule.list_schedule(data_dir) == [])
    finally:
        scheduler.shutdown()
