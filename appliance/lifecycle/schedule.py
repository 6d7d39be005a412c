"""Scheduled promotions: jobs kept in the registry database so a restart loses none.

Jobs live in the ``scheduled_jobs`` table of ``<data_dir>/registry.db`` (APScheduler's
SQLAlchemy job store, next to the registry tables, in the same WAL-mode file). Any
process can add, list or cancel jobs through :func:`job_store` (a scheduler started
paused, which never runs anything); the serving process runs them with
:func:`make_scheduler`, whose scheduler re-reads the table every ``poll_s`` seconds so it
also sees jobs added by other processes. A job whose time passed while the box was off
runs when it comes back (up to :data:`MISFIRE_GRACE_S` late), and is logged as late.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.events import (
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_SCHEDULER_SHUTDOWN,
    EVENT_SCHEDULER_STARTED,
    JobExecutionEvent,
    SchedulerEvent,
)
from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_RUNNING, BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from ..errors import ApplianceError, BadRequest, NotFound
from ..registry.db import open_database, transaction
from ..registry.events import record_event
from ..registry.opener import open_registry
from ..settings import load_settings
from .settings import WebhookSettings
from .stages import STAGES

log = logging.getLogger("appliance.schedule")

JOB_TABLE = "scheduled_jobs"
PROMOTE_FUNC = "appliance.lifecycle.schedule:run_scheduled_promotion"
MISFIRE_GRACE_S = 24 * 3600  # a job up to a day late still runs (box was off)
LATE_AFTER_S = 5.0  # a job this much past its time is logged as late
SQLITE_BUSY_TIMEOUT_S = 30.0  # as the registry's own connections

__all__ = ["cancel_scheduled", "job_store", "list_schedule", "make_scheduler",
           "run_scheduled_promotion", "schedule_promotion", "to_ics"]


class _PollMixin:
    """Wake up at least every ``poll_s`` seconds: other processes add jobs to the table."""

    poll_s: float = 1.0

    def _process_jobs(self) -> float | None:
        wait: float | None = super()._process_jobs()  # type: ignore[misc]
        return self.poll_s if wait is None else min(wait, self.poll_s)


# APScheduler ships no type information, so its classes are Any to mypy
class _BackgroundScheduler(_PollMixin, BackgroundScheduler):  # type: ignore[misc]
    pass


class _BlockingScheduler(_PollMixin, BlockingScheduler):  # type: ignore[misc]
    pass


def _job_parts(job_id: str) -> tuple[str, str] | None:
    """(model, version) of a promotion job id, else None (names never contain ':')."""
    parts = job_id.split(":", 4)
    return (parts[1], parts[2]) if len(parts) == 5 and parts[0] == "promote" else None


def _record_event(data_dir: Path, actor: str, action: str, model: str | None,
                  version: str | None, detail: dict[str, Any]) -> None:
    """Append one row to the registry's ``events``; log (never raise) when that fails."""
    try:
        with open_registry(data_dir) as registry, transaction(registry.db):
            record_event(registry.db, actor=actor, action=action, model=model,
                         version=version, detail=detail)
    except Exception:
        log.exception("could not record event %s for %s %s", action, model, version)


def _listener(data_dir: Path) -> Any:
    def on_event(event: JobExecutionEvent) -> None:
        late = (datetime.now(UTC) - event.scheduled_run_time).total_seconds()
        if event.code == EVENT_JOB_MISSED:
            log.error("scheduled job %s missed: due %s, more than %d s ago; not run",
                      event.job_id, event.scheduled_run_time.isoformat(), MISFIRE_GRACE_S)
            model, version = _job_parts(event.job_id) or (None, None)
            _record_event(data_dir, "scheduler", "scheduled-promotion-missed", model,
                          version, {"job_id": event.job_id, "late_s": round(late, 3),
                                    "due": event.scheduled_run_time.isoformat()})
        elif late > LATE_AFTER_S:
            log.warning("scheduled job %s ran late: due %s, %.0f s ago (box was off?)",
                        event.job_id, event.scheduled_run_time.isoformat(), late)

    return on_event


def _outbox_poller(scheduler: BaseScheduler, data_dir: Path,
                   settings: WebhookSettings | None) -> Any:
    """A listener: poll the webhook outbox while ``scheduler`` runs (not while paused)."""
    from .webhooks import OutboxPoller

    poller: list[OutboxPoller] = []

    def on_event(event: SchedulerEvent) -> None:
        if event.code == EVENT_SCHEDULER_STARTED and scheduler.state == STATE_RUNNING:
            every = (settings or load_settings({"data_dir": data_dir}).lifecycle.webhooks
                     ).poll_s
            poller.append(OutboxPoller(data_dir, every, settings))
            poller[-1].start()
        elif event.code == EVENT_SCHEDULER_SHUTDOWN:
            while poller:
                poller.pop().stop()

    return on_event


def make_scheduler(data_dir: Path, *, background: bool = True, poll_s: float = 1.0,
                   webhooks: bool | WebhookSettings = True) -> BaseScheduler:
    """A scheduler (not started) on the persistent job table of ``data_dir``'s registry.

    ``background=True`` gives a scheduler whose ``start()`` returns (a thread runs jobs);
    ``False`` one whose ``start()`` blocks (a dedicated scheduler process). With
    ``webhooks``, a scheduler started un-paused also makes this process drain the webhook
    outbox, checking every ``lifecycle.webhooks.poll_s`` seconds until it shuts down, so
    deliveries queued by CLI processes go out too (:mod:`appliance.lifecycle.webhooks`);
    pass the serving settings' ``lifecycle.webhooks`` to use those rather than the
    configuration file and environment.
    """
    path = Path(data_dir) / "registry.db"
    open_database(path).conn.close()  # registry schema present, file in WAL mode
    store = SQLAlchemyJobStore(
        url=f"sqlite:///{path}", tablename=JOB_TABLE,
        engine_options={"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}})
    cls = _BackgroundScheduler if background else _BlockingScheduler
    scheduler = cls(jobstores={"default": store}, timezone=UTC,
                    job_defaults={"coalesce": True, "misfire_grace_time": MISFIRE_GRACE_S,
                                  "max_instances": 1})
    scheduler.poll_s = poll_s
    scheduler.add_listener(_listener(Path(data_dir)), EVENT_JOB_EXECUTED | EVENT_JOB_MISSED)
    if webhooks:
        given = webhooks if isinstance(webhooks, WebhookSettings) else None
        scheduler.add_listener(_outbox_poller(scheduler, Path(data_dir), given),
                               EVENT_SCHEDULER_STARTED | EVENT_SCHEDULER_SHUTDOWN)
    return scheduler


@contextmanager
def job_store(data_dir: Path) -> Iterator[BaseScheduler]:
    """A scheduler started paused: add, list and remove jobs here; it runs none of them."""
    scheduler = make_scheduler(data_dir, webhooks=False)
    scheduler.start(paused=True)
    try:
        yield scheduler
    finally:
        scheduler.shutdown(wait=False)


def _as_utc(at: datetime) -> datetime:
    """``at`` in UTC; a naive time is taken to be UTC already."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def _entry(job: Job) -> dict[str, Any]:
    _, model, version, to, actor, reason, emergency_reason = job.args
    return {"id": job.id, "model": model, "version": version, "to": to,
            "at": _as_utc(job.trigger.run_date).isoformat(), "actor": actor,
            "reason": reason, "emergency_reason": emergency_reason}


def schedule_promotion(data_dir: Path, model: str, version: str, to: str, at: datetime, *,
                       actor: str, reason: str = "",
                       emergency_reason: str | None = None) -> dict[str, Any]:
    """Schedule ``promote(model, version, to)`` at ``at`` (naive = UTC); return the entry.

    The same model, version, stage and time give the same job id, so scheduling it again
    replaces it. Gates (transition, approvals, freeze windows) are judged when it runs.
    """
    at_utc, now = _as_utc(at), datetime.now(UTC)
    if at_utc <= now:
        raise BadRequest(f"time {at_utc.isoformat()} is in the past (now {now.isoformat()}); "
                         "give a future time, ISO 8601 (naive times are UTC)")
    if to not in STAGES:
        raise BadRequest(f"unknown stage {to!r}; stages are: {', '.join(STAGES)}")
    data_dir = Path(data_dir).resolve()  # the serving process may run from another cwd
    with open_registry(data_dir) as registry:
        registry.version(model, version)  # NotFound names what is registered
    job_id = f"promote:{model}:{version}:{to}:{at_utc.isoformat()}"
    with job_store(data_dir) as scheduler:
        job = scheduler.add_job(
            PROMOTE_FUNC, trigger="date", run_date=at_utc, id=job_id, replace_existing=True,
            name=f"Promote {model} {version} to {to}",
            args=[str(data_dir), model, version, to, actor, reason, emergency_reason])
        entry = _entry(job)
    _record_event(data_dir, actor, "promotion-scheduled", model, version,
                  {"job_id": job_id, "to": to, "at": entry["at"], "reason": reason,
                   "emergency_reason": emergency_reason})
    return entry


def list_schedule(data_dir: Path) -> list[dict[str, Any]]:
    """The scheduled promotions not yet run, soonest first."""
    with job_store(data_dir) as scheduler:
        jobs = [j for j in scheduler.get_jobs() if _job_parts(j.id)]
        return sorted((_entry(j) for j in jobs), key=lambda e: (e["at"], e["id"]))


def cancel_scheduled(data_dir: Path, job_id: str, *, actor: str = "cli") -> dict[str, Any]:
    """Remove a scheduled promotion; NotFound when there is no such job (or it ran)."""
    missing = NotFound(f"no scheduled promotion {job_id!r} (it may have run already); "
                       "list them with: appliance models schedule")
    with job_store(data_dir) as scheduler:
        job = scheduler.get_job(job_id)
        if job is None or not _job_parts(job_id):
            raise missing
        entry = _entry(job)
        try:
            scheduler.remove_job(job_id)
        except JobLookupError:
            raise missing from None
    _record_event(Path(data_dir), actor, "promotion-schedule-cancelled", entry["model"],
                  entry["version"], {"job_id": job_id, "to": entry["to"], "at": entry["at"]})
    return entry


def run_scheduled_promotion(data_dir: str, model: str, version: str, to: str, actor: str,
                            reason: str, emergency_reason: str | None) -> dict[str, Any] | None:
    """The job: promote now; a failure is logged and recorded in ``events``, never raised.

    No loader is passed: the serving process loads the version when its registry poll
    sees the change.
    """
    log.info("scheduled promotion: %s %s -> %s (by %s)", model, version, to, actor)
    try:
        from .promotion import promote

        settings = load_settings({"data_dir": Path(data_dir)})
        with open_registry(settings) as registry:
            result = promote(registry, settings, model, version, to, actor=actor,
                             reason=reason, emergency_reason=emergency_reason, loader=None)
    except Exception as exc:
        expected = isinstance(exc, ApplianceError)
        message = exc.message if isinstance(exc, ApplianceError) else f"{exc!r}"
        (log.error if expected else log.exception)(
            "scheduled promotion of %s %s to %s failed: %s", model, version, to, message)
        _record_event(Path(data_dir), actor, "scheduled-promotion-failed", model, version,
                      {"to": to, "error": message, "error_type": type(exc).__name__,
                       "reason": reason})
        return None
    log.info("scheduled promotion done: %s %s -> %s", model, version, to)
    return result


ICS_PRODID = "-//appliance//release calendar//EN"


def _ics_text(value: str) -> str:
    """Escape a TEXT value (RFC 5545 3.3.11)."""
    value = value.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,")
    return value.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\n")


def _ics_fold(line: str) -> str:
    """Fold a content line into chunks of at most 75 octets, never splitting a character."""
    out: list[str] = []
    chunk, size = "", 0
    for char in line:
        n = len(char.encode("utf-8"))
        if size + n > 75:
            out.append(chunk)
            chunk, size = " ", 1  # a continuation line starts with one space
        chunk += char
        size += n
    out.append(chunk)
    return "\r\n".join(out)


def _ics_time(at: datetime) -> str:
    return _as_utc(at).strftime("%Y%m%dT%H%M%SZ")


def to_ics(entries: list[dict[str, Any]], *, now: datetime | None = None) -> str:
    """The release calendar as RFC 5545 iCalendar text: one VEVENT per scheduled entry."""
    stamp = _ics_time(now or datetime.now(UTC))
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", f"PRODID:{ICS_PRODID}", "CALSCALE:GREGORIAN",
             "METHOD:PUBLISH"]
    for e in entries:
        description = f"Scheduled by {e['actor']}.\nReason: {e.get('reason') or '(none)'}"
        if e.get("emergency_reason"):
            description += f"\nEmergency override: {e['emergency_reason']}"
        description += f"\nJob: {e['id']}"
        summary = f"Promote {e['model']} {e['version']} to {e['to']}"
        lines += ["BEGIN:VEVENT", f"UID:{_ics_text(e['id'] + '@appliance')}",
                  f"DTSTAMP:{stamp}", f"DTSTART:{_ics_time(datetime.fromisoformat(e['at']))}",
                  f"SUMMARY:{_ics_text(summary)}",
                  f"DESCRIPTION:{_ics_text(description)}", "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return "".join(_ics_fold(line) + "\r\n" for line in lines)
