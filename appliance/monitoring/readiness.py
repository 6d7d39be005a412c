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
    from ..runtime.served import ServedVersion

__all__ = ["failing_production", "failing_versions"]


def failing_versions(repository: ModelRepository, monitor: RequestMonitor | None
                     ) -> list[tuple[ServedVersion, str]]:
    """Each failed production version with a line saying why (empty: none). Without a
    monitor only failed loads count."""
    out = []
    for served in repository.index():
        if served.record.stage != "production":
            continue
        record = served.record
        if served.state == "failed":
            out.append((served, f"{record.model} version {record.version} failed to load: "
                                f"{served.reason}"))
        elif monitor is not None and served.ready and monitor.failing(served):
            stats = served.metrics
            out.append((served, f"{record.model} version {record.version} is failing at "
                                f"inference ({stats.streak} backend errors in a row; last: "
                                f"{stats.last_error})"))
    return out


def failing_production(repository: ModelRepository, monitor: RequestMonitor) -> list[str]:
    """One line per failed production version (empty: none)."""
    return [line for _, line in failing_versions(repository, monitor)]
