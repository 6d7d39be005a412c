"""The scheduled sync of the serving process, and the hub sync's place in its health.

:func:`start_sync` adds the ``hub-sync`` job to the serving process's APScheduler (the
one that runs scheduled promotions and retention, :func:`appliance.services.start_scheduler`)
when ``[sync] enabled`` and the box is enrolled: every ``interval_s`` seconds, moved by
up to ``jitter`` of it either way (so a fleet restarted together does not poll in step),
the first run a few seconds after start. The job lives in an in-memory job store of its
own: it holds the running services, which the persistent store cannot pickle, and it is
re-added at every start anyway. It runs in the scheduler's worker thread, off the request
path, one at a time (``max_instances=1``, missed runs coalesced); a failing cycle is
logged and the next one tries again.

:func:`watch_sync` adds the ``hub_sync`` dependency to ``/v1/health``
(:func:`~.staleness.hub_sync_dependency`).
"""

from __future__ import annotations

import logging
import random
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from .staleness import hub_sync_dependency
from .state import enrollment_of

if TYPE_CHECKING:
    from ..services import Services

__all__ = ["JOB_ID", "JOB_STORE", "run_scheduled_sync", "start_sync", "watch_sync"]

log = logging.getLogger("appliance.sync")

JOB_ID = "hub-sync"
JOB_STORE = "sync-memory"
#: the first cycle runs this many seconds after start at most (or one interval if shorter),
#: plus a random part
FIRST_RUN_S = 5.0


def watch_sync(services: Services) -> None:
    """Report the hub sync under the health report's dependencies."""
    data_dir = services.settings.data_dir
    if services.health is not None:
        services.health.add_dependency("hub_sync", lambda: hub_sync_dependency(data_dir))


def run_scheduled_sync(services: Services) -> dict[str, Any] | None:
    """The job: one cycle on the running services; its result (None when it failed,
    which is logged)."""
    from .box import box_of_services
    from .cycle import run_cycle

    box = box_of_services(services)
    try:
        result = run_cycle(box)
    except Exception:
        log.exception("hub sync: the scheduled cycle failed; the next one tries again")
        return None
    finally:
        box.registry.close()
    summary = result.to_dict()
    log.info("hub sync: %s (%d installed, %d promoted, %d failed, %.1f s)", result.status,
             len(result.applied.installed), len(result.applied.promoted),
             len(result.applied.failed), result.duration_s)
    return summary


def start_sync(services: Services) -> bool:
    """Schedule the sync on ``services.scheduler`` (module docstring); whether it was."""
    settings = services.settings.sync
    scheduler = services.scheduler
    if scheduler is None or not settings.enabled:
        return False
    if enrollment_of(services.settings.data_dir) is None:
        if settings.hub_url:
            log.warning("[sync] hub_url is %s but this box is not enrolled: no sync runs "
                        "until `appliance sync enroll %s TOKEN`", settings.hub_url,
                        settings.hub_url)
        return False
    from apscheduler.jobstores.memory import MemoryJobStore

    if JOB_STORE not in scheduler._jobstores:  # APScheduler has no public lookup
        scheduler.add_jobstore(MemoryJobStore(), alias=JOB_STORE)
    delay = min(FIRST_RUN_S, settings.interval_s)
    first = datetime.now(UTC) + timedelta(
        seconds=delay + random.uniform(0, settings.interval_s * settings.jitter))
    scheduler.add_job(run_scheduled_sync, "interval", seconds=settings.interval_s,
                      jitter=settings.interval_s * settings.jitter or None, id=JOB_ID,
                      jobstore=JOB_STORE, args=[services], next_run_time=first,
                      replace_existing=True, max_instances=1, coalesce=True)
    log.info("hub sync: every %.0f s (±%.0f %%), first at %s", settings.interval_s,
             settings.jitter * 100, first.isoformat(timespec="seconds"))
    return True
