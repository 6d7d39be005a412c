"""Replay a recorded trace against a stored route: the decisions it makes, in order.

A route's draws come from a sequence seeded by the model and the route's revision
(:mod:`.router`), and sticky keys hash the same everywhere, so replaying the requests a
route saw since its revision began gives the decisions it made (``dry_run`` routes log
them: ``GET /v1/routes/{model}/decisions``) as long as the split did not change within
the revision: weighted, sticky and shadow routes always, a canary until its first step, a
bandit until its first re-weighting (its weights are recomputed from ``rewards.db`` every
tick, not kept with the trace). Each trace line is a JSON object with any of
``headers`` (name → value), ``subject`` and ``parameters``; ``traffic: "test"`` marks a
test request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import BadRequest, NotFound
from ..registry import Registry
from ..runtime.served import ServedVersion
from ..settings import Settings
from .policies import RouteContext, RouteRuntime, StoredPolicy
from .policy import default_route
from .router import route_seed
from .store import get_route, state_of

__all__ = ["replay_trace", "replay"]


def _context(line: dict[str, Any]) -> RouteContext:
    headers = line.get("headers") or {}
    if not isinstance(headers, dict):
        raise BadRequest("trace: `headers` must be an object of name -> value")
    return RouteContext([(str(k).lower().encode(), str(v).encode("latin-1"))
                         for k, v in headers.items()], line.get("subject"),
                        line.get("parameters"))


def replay(policy: StoredPolicy, lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The decision of ``policy`` for every line (a dry-run route's would-be decision)."""
    policy.dry_run = False  # the decision itself, not the fallback a dry run answers with
    out = []
    for line in lines:
        if line.get("traffic") == "test":
            found = policy.decide_test() or policy.primary()
            out.append({"version": found.served.record.version, "label": "test"})
            continue
        decision = policy.decide(_context(line))
        out.append({"version": decision.served.record.version, "label": decision.label})
    return out


def replay_trace(registry: Registry, model: str, trace: Path,
                 settings: Settings | None = None) -> list[dict[str, Any]]:
    """Replay ``trace`` (JSON lines) against ``model``'s stored route from its start."""
    stored = get_route(registry.db, model)
    if stored is None:
        raise NotFound(f"{model} has no stored route to replay against")
    versions = {}
    for record in registry.versions(model):
        served = ServedVersion.for_record(record)
        served.state = "ready"  # deciding only: nothing is loaded
        versions[record.version] = served
    seed = (settings.routing.reward_seed if settings else 0)
    runtime = RouteRuntime(model, stored.revision, route_seed(seed, model, stored.revision))
    state = state_of(registry.db, model, stored.revision) or {}
    runtime.canary_weight = state.get("canary_weight")
    policy = StoredPolicy(stored, versions, runtime, default_route(versions))
    lines = []
    for number, text in enumerate(trace.read_text().splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError as exc:
            raise BadRequest(f"trace line {number} is not JSON: {exc}") from None
        if not isinstance(line, dict):
            raise BadRequest(f"trace line {number} must be a JSON object")
        lines.append(line)
    return replay(policy, lines)
