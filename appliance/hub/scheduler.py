"""The hub's scheduled work: the rollout controller's tick every ``rollout_tick_s``
(:mod:`.rollout_controller`), and re-signing timestamp and snapshot on a schedule, so
boxes never see them expire while the hub is up (an APScheduler 3 ``BackgroundScheduler``,
started by ``hub serve``).

A failed refresh (a full disk, a missing online key) is logged and retried at the next
run; it never stops the scheduler. One run at a time (``max_instances=1``), and a run
missed while the process was busy is run once, not once per missed interval.
"""

from __future__ import annotations

import logging
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from .services import Hub

log = logging.getLogger("appliance.hub")

JOB_ID = "hub-refresh"
ROLLOUT_JOB_ID = "hub-rollouts"


def refresh(hub: Hub) -> Any:
    """Re-sign timestamp and snapshot now (what the job runs)."""
    try:
        return hub.repository.refresh()
    except Exception:
        log.exception("re-signing timestamp and snapshot failed; retrying in %g minutes",
                      hub.settings.refresh_minutes)
        return None


def advance_rollouts(hub: Hub) -> Any:
    """One rollout controller tick (what the rollout job runs)."""
    from .rollout_controller import tick

    try:
        return tick(hub)
    except Exception:
        log.exception("the rollout controller tick failed; retrying in %g s",
                      hub.settings.rollout_tick_s)
        return None


def start_scheduler(hub: Hub) -> BackgroundScheduler:
    """A started scheduler running :func:`refresh` every ``refresh_minutes``; call
    ``.shutdown()`` on it when the hub stops."""
    scheduler = BackgroundScheduler(daemon=True, timezone="UTC")
    scheduler.add_job(refresh, "interval", args=[hub], id=JOB_ID,
                      minutes=hub.settings.refresh_minutes, max_instances=1,
                      coalesce=True, misfire_grace_time=None)
    scheduler.add_job(advance_rollouts, "interval", args=[hub], id=ROLLOUT_JOB_ID,
                      seconds=hub.settings.rollout_tick_s, max_instances=1, coalesce=True,
                      misfire_grace_time=None)
    scheduler.start()
    return scheduler
