"""Which production versions count as failed, for ``/v2/health/ready``.

A version in stage ``production`` counts as failed when it is in state ``failed`` (its
load, or a reload, failed: ``ModelRepository.load`` keeps it with the reason) or when it
is *failing* at inference (``failing_after_errors`` consecutive backend errors with no
execution since, :mod:`.counters`). Either turns readiness 503 at the next probe: it is
computed from the live state when asked, so there is no delay to wait out. A version
that is loading, or one in another stage, never does, and neither does anything that
only degrades the box (drift, an SLO breach, audit drops: ``/v1/health``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .recorder import RequestMonitor

if TYPE_CHECKING:
    from ..runtime.repository import ModelRepository

__all__ = ["failing_production"]


def failing_production(repository: ModelRepository, monitor: RequestMonitor) -> list[str]:
    """One line per failed production version (empty: none)."""
    out = []
    for served in repository.index():
        if served.record.stage != "production":
            continue
        record = served.record
        if served.state == "failed":
            out.append(f"{record.model} version {record.version} failed to load: "
                       f"{served.reason}")
        elif served.ready and monitor.failing(served):
            stats = served.metrics
            out.append(f"{record.model} version {record.version} is failing at inference "
                       f"({stats.streak} backend errors in a row; last: {stats.last_error})")
    return out
