"""What ``appliance routes …`` and ``/v1/routes`` do, in one place for both.

Each takes an open :class:`~appliance.registry.Registry` (the API's worker-thread
connection, or the CLI's) and, in a server, the :class:`~.router.Router` whose live state
(current weights, a canary's step, shadow comparisons, dry-run decisions) is added to
what is stored.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import NotFound
from ..lifecycle.promotion import current_production
from ..registry import Registry
from .policies import RouteRuntime
from .router import Router
from .spec import RouteSpec, check_spec, decode_spec, encode_spec
from .store import StoredRoute, delete_route, get_route, routes, set_route, state_of

__all__ = ["describe", "list_routes", "put", "remove", "shadow_report"]


def _stages(registry: Registry, model: str) -> dict[str, str]:
    registry.model(model)  # NotFound (404) for an unknown model
    return {v.version: v.stage for v in registry.versions(model)}


def put(registry: Registry, model: str, body: bytes | Mapping[str, Any], *, actor: str,
        if_match: str | None = None, ready: set[str] | None = None,
        reason: str = "") -> StoredRoute:
    """Check and store a route (400 / 404 / 409 / 412 as :mod:`.spec` and :mod:`.store`
    say). ``ready``: the versions loaded in the server (None from the CLI)."""
    spec = decode_spec(body)
    stages = _stages(registry, model)
    production = current_production(registry, model)
    spec = check_spec(model, spec, stages, production.version if production else None,
                      ready)
    return set_route(registry.db, model, spec, actor=actor, if_match=if_match, reason=reason)


def remove(registry: Registry, model: str, *, actor: str, if_match: str | None = None,
           reason: str = "") -> StoredRoute:
    """Delete a model's route: it goes back to the default route."""
    _stages(registry, model)
    return delete_route(registry.db, model, actor=actor, if_match=if_match, reason=reason)


def _live(runtime: RouteRuntime | None, policy: Any, router: Router) -> dict[str, Any]:
    if runtime is None:
        return {}
    live: dict[str, Any] = {"decisions": runtime.decisions}
    if policy is not None and policy.split is not None:
        live["weights"] = policy.split.shares()
    if runtime.canary_weight is not None:
        live["canary_weight"] = runtime.canary_weight
    if runtime.dry_counts:
        live["dry_run"] = dict(runtime.dry_counts)
    canary = router.canary_of(runtime.model) if (
        router.canary_of is not None and policy is not None
        and policy.spec.policy == "canary") else None
    if canary is not None:
        live["canary"] = canary
    return live


def describe(registry: Registry, model: str, router: Router | None = None) -> dict[str, Any]:
    """The stored route (None: the default route), its state and, in a server, what it
    is doing now."""
    _stages(registry, model)
    stored = get_route(registry.db, model)
    if stored is None:
        return {"model": model, "route": None, "etag": None,
                "default": "production, else the previous production, else the newest "
                           "registered version (docs/routing.md)"}
    out = stored.to_dict()
    out["state"] = state_of(registry.db, model, stored.revision)
    if router is not None:
        runtime = router.runtimes.get(model)
        if runtime is not None and runtime.revision == stored.revision:
            out["live"] = _live(runtime, router.policies.get(model), router)
    return out


def list_routes(registry: Registry) -> list[dict[str, Any]]:
    """Every stored route, by model."""
    return [r.to_dict() for r in routes(registry.db).values()]


def shadow_report(registry: Registry, model: str, router: Router | None,
                  runner: Any = None) -> dict[str, Any]:
    """Per shadow version: agreement, differences, PSI, latency delta, errors, sheds."""
    _stages(registry, model)
    stored = get_route(registry.db, model)
    if stored is None or not stored.spec.shadows:
        raise NotFound(f"{model} has no shadow versions; add them with `shadows` in its "
                       f"route (appliance routes set {model} --shadow VERSION)")
    runtime = router.runtimes.get(model) if router is not None else None
    comparisons = runtime.shadow_comparisons if runtime is not None else {}
    out: dict[str, Any] = {"model": model, "baseline": _baseline(stored.spec),
                           "shadows": {}}
    for version in stored.spec.shadows:
        found = comparisons.get(version)
        out["shadows"][version] = found.report() if found is not None else {
            "requests": 0, "note": "no copies compared yet in this server"}
    if runner is not None:
        out["queue"] = runner.describe()
    out["route"] = encode_spec(stored.spec)
    return out


def _baseline(spec: RouteSpec) -> str | None:
    return spec.baseline
