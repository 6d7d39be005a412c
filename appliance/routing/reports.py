"""Shadow reports as the routing thread last stored them (for commands without a server)."""

from __future__ import annotations

import json
from typing import Any

from ..errors import NotFound
from ..registry import Registry

__all__ = ["stored_shadow_report"]


def stored_shadow_report(registry: Registry, model: str) -> dict[str, Any]:
    """The latest stored shadow report of ``model``; NotFound when none was stored."""
    registry.model(model)
    row = registry.db.execute("SELECT body, updated_at FROM route_reports WHERE model = ? "
                              "AND kind = 'shadow'", [model]).fetchone()
    if row is None:
        raise NotFound(f"no shadow report for {model} yet: a running server stores one "
                       "every 10 s while a route with shadows gets traffic")
    return {"model": model, "updated_at": row[1], "shadows": json.loads(row[0])}
