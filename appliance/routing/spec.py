"""A model's stored route: what ``PUT /v1/routes/{model}`` takes, checked before it is kept.

    {"policy": "weighted", "weights": {"1": 70, "2": 30}}
    {"policy": "sticky",   "weights": {"1": 90, "2": 10}, "sticky": {"header": "X-User-Id"}}
    {"policy": "canary",   "candidate": "2", "steps": [5, 25, 50, 100], "interval_s": 60}
    {"policy": "shadow",   "shadows": ["2"], "compare": {"output": "probabilities"}}
    {"policy": "bandit",   "arms": ["1", "2", "3"], "reward": "binary"}

Every policy may add ``shadows`` (copies of its traffic to compare), ``sticky`` (where
the bucket key comes from), ``test`` (where tagged test traffic goes) and ``dry_run``
(decide and log, change no traffic). :func:`check_spec` is the one check: a 400 for a
body that cannot be a route (weights that do not sum to 100, a bad step plan, unknown
threshold names), a 409 for a version that is not there or not in a routable stage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Literal

import msgspec

from ..errors import BadRequest, Conflict

__all__ = ["POLICIES", "ROUTABLE", "RouteSpec", "StickySpec", "TestSpec", "check_spec",
           "decode_spec", "encode_spec", "routed_versions"]

POLICIES = ("weighted", "sticky", "canary", "shadow", "bandit")
#: stages a version may take traffic in (weights, arms, a canary's candidate or baseline)
ROUTABLE = frozenset({"production", "canary", "deprecated"})
#: stages a shadow may be in (it answers no client)
SHADOWABLE = frozenset({"production", "canary", "deprecated", "shadow", "registered"})
DEFAULT_STEPS = (5.0, 25.0, 50.0, 100.0)
#: the largest header name or parameter a sticky key may come from
_KEY_NAME = 128


class StickySpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where a sticky request's key comes from: one of a header, the token's subject or a
    request parameter. ``salt`` (default: the model name) keeps two models' buckets
    independent; changing it reshuffles every user."""

    header: str | None = None
    subject: bool = False
    parameter: str | None = None
    salt: str | None = None


class TestSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Where tagged test traffic that names no version goes (default: the candidate)."""

    version: str | None = None


class RouteSpec(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One model's route (docs/routing.md lists every field)."""

    policy: Literal["weighted", "sticky", "canary", "shadow", "bandit"]
    #: weighted and sticky: version -> percent, summing to 100
    weights: dict[str, float] | None = None
    #: canary: the version under test, and the baseline (default: the production version)
    candidate: str | None = None
    baseline: str | None = None
    steps: list[float] | None = None
    interval_s: float = 60.0
    #: canary: appliance.experiments.canary.CanaryThresholds fields
    thresholds: dict[str, Any] = msgspec.field(default_factory=dict)
    #: every policy: versions that get a copy of its traffic, compared with the answer
    shadows: list[str] = msgspec.field(default_factory=list)
    shadow_percent: float = 100.0
    #: appliance.routing.compare.ComparisonSettings fields
    compare: dict[str, Any] = msgspec.field(default_factory=dict)
    #: bandit: the arms, the kind of reward, and appliance.experiments.bandit settings
    arms: list[str] | None = None
    reward: Literal["binary", "continuous"] = "binary"
    bandit: dict[str, Any] = msgspec.field(default_factory=dict)
    reward_wait_s: float = 3600.0
    default_reward: float = 0.0
    #: experiments report: a maximum sample size per arm (group-sequential test) or none
    max_samples: int | None = None
    sticky: StickySpec | None = None
    test: TestSpec | None = None
    dry_run: bool = False


def decode_spec(raw: bytes | Mapping[str, Any]) -> RouteSpec:
    """A RouteSpec from a JSON body or a dict; BadRequest saying which field is wrong."""
    try:
        if isinstance(raw, (bytes, bytearray, memoryview)):
            return msgspec.json.decode(raw, type=RouteSpec)
        return msgspec.convert(dict(raw), type=RouteSpec)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise BadRequest(f"route: {exc}; e.g. {{\"policy\": \"weighted\", \"weights\": "
                         f"{{\"1\": 70, \"2\": 30}}}} (docs/routing.md)") from None


def encode_spec(spec: RouteSpec) -> dict[str, Any]:
    """The spec as a JSON-ready dict (defaults included, so a GET shows what applies)."""
    return msgspec.to_builtins(spec)  # type: ignore[no-any-return]


def routed_versions(spec: RouteSpec) -> list[str]:
    """Versions that answer clients under this spec (not shadows)."""
    if spec.policy in ("weighted", "sticky"):
        return list(spec.weights or {})
    if spec.policy == "canary":
        return [v for v in (spec.baseline, spec.candidate) if v]
    if spec.policy == "bandit":
        return list(spec.arms or [])
    return [spec.baseline] if spec.baseline else []


def _finite(name: str, value: float, low: float, high: float) -> None:
    if not (math.isfinite(value) and low <= value <= high):
        raise BadRequest(f"route: {name} must be a number from {low:g} to {high:g}, "
                         f"got {value!r}")


def _check_weights(weights: dict[str, float] | None, policy: str) -> None:
    if not weights:
        raise BadRequest(f"route: a {policy} route needs `weights`, version -> percent "
                         "summing to 100, e.g. {\"1\": 70, \"2\": 30}")
    for version, weight in weights.items():
        _finite(f"weights[{version!r}]", weight, 0, 100)
    total = sum(weights.values())
    if abs(total - 100) > 1e-6:
        raise BadRequest(f"route: weights must sum to 100, got {total:g} "
                         f"({', '.join(f'{v}: {w:g}' for v, w in weights.items())})")


def _check_steps(steps: list[float]) -> None:
    if not steps or any(not (0 < s <= 100 and math.isfinite(s)) for s in steps) or any(
            b <= a for a, b in zip(steps, steps[1:], strict=False)) or steps[-1] != 100:
        raise BadRequest(f"route: canary steps must be percents rising strictly within "
                         f"(0, 100] and ending at 100, e.g. [5, 25, 50, 100]; got {steps}")


def _check_sticky(sticky: StickySpec | None, policy: str) -> None:
    if policy == "sticky" and sticky is None:
        raise BadRequest("route: a sticky route needs `sticky`: {\"header\": \"X-User-Id\"}, "
                         "{\"subject\": true} or {\"parameter\": \"user\"}")
    if sticky is None:
        return
    given = [n for n, v in (("header", sticky.header), ("subject", sticky.subject),
                            ("parameter", sticky.parameter)) if v]
    if len(given) != 1:
        raise BadRequest("route: sticky takes exactly one key source: `header`, `subject` "
                         f"or `parameter` (got {', '.join(given) or 'none'})")
    for name in ("header", "parameter"):
        value = getattr(sticky, name)
        if value is not None and not (0 < len(value) <= _KEY_NAME and value.isascii()
                                      and value.replace("-", "").replace("_", "").isalnum()):
            raise BadRequest(f"route: sticky {name} must be 1-{_KEY_NAME} letters, digits, "
                             f"'-' or '_', got {value!r}")


def _check_shape(spec: RouteSpec) -> None:
    """What can be checked without the registry (400s)."""
    if spec.policy in ("weighted", "sticky"):
        _check_weights(spec.weights, spec.policy)
    elif spec.weights is not None:
        raise BadRequest(f"route: `weights` belong to weighted and sticky routes; a "
                         f"{spec.policy} route derives its own")
    if spec.policy == "canary":
        if not spec.candidate:
            raise BadRequest("route: a canary route needs `candidate`, the version under test")
        _check_steps(spec.steps if spec.steps is not None else list(DEFAULT_STEPS))
        _finite("interval_s", spec.interval_s, 1, 86_400)
    if spec.policy == "bandit":
        arms = spec.arms or []
        if len(arms) < 2 or len(set(arms)) != len(arms):
            raise BadRequest(f"route: a bandit needs `arms`, two or more distinct versions; "
                             f"got {arms}")
    if spec.policy == "shadow" and not spec.shadows:
        raise BadRequest("route: a shadow route needs `shadows`, the versions that get copies")
    if len(set(spec.shadows)) != len(spec.shadows):
        raise BadRequest(f"route: shadows repeat a version: {spec.shadows}")
    overlap = set(spec.shadows) & set(routed_versions(spec))
    if overlap:
        raise BadRequest(f"route: version {sorted(overlap)[0]} cannot both answer and shadow")
    _finite("shadow_percent", spec.shadow_percent, 0, 100)
    _finite("reward_wait_s", spec.reward_wait_s, 1, 90 * 86_400)
    _finite("default_reward", spec.default_reward, -1e12, 1e12)
    if spec.max_samples is not None and spec.max_samples < 2:
        raise BadRequest(f"route: max_samples must be at least 2, got {spec.max_samples}")
    _check_sticky(spec.sticky, spec.policy)
    _check_settings(spec)


def _check_settings(spec: RouteSpec) -> None:
    """The nested settings are the analysers' own dataclasses: their ValueError is a 400."""
    from ..experiments.bandit import BanditConfig
    from ..experiments.canary import CanaryThresholds
    from .compare import ComparisonSettings

    for field, cls, used in (("thresholds", CanaryThresholds, spec.policy == "canary"),
                             ("compare", ComparisonSettings, bool(spec.shadows)),
                             ("bandit", BanditConfig, spec.policy == "bandit")):
        values = getattr(spec, field)
        if values and not used:
            raise BadRequest(f"route: `{field}` does not apply to this route")
        try:
            cls(**values)
        except TypeError as exc:
            raise BadRequest(f"route: {field}: {exc}") from None
        except ValueError as exc:
            raise BadRequest(f"route: {field}: {exc}") from None


def check_spec(model: str, spec: RouteSpec, stages: Mapping[str, str],
               production: str | None, ready: set[str] | None = None) -> RouteSpec:
    """``spec`` with its defaults filled in (a canary's baseline and steps), after every
    check: BadRequest (400) for the shape, Conflict (409) for a version that is not in
    the registry, not in a routable stage, or (``ready`` given: in a server) not loaded."""
    _check_shape(spec)
    if spec.policy in ("canary", "shadow") and spec.baseline is None:
        if production is None:
            raise Conflict(f"{model} has no production version to be the baseline; name "
                           "one with `baseline`")
        spec = msgspec.structs.replace(spec, baseline=production)
    if spec.policy == "canary" and spec.steps is None:
        spec = msgspec.structs.replace(spec, steps=list(DEFAULT_STEPS))
    answering = routed_versions(spec)
    if spec.test is not None and spec.test.version:
        answering.append(spec.test.version)
    for version, allowed in [(v, ROUTABLE) for v in answering] + [
            (v, SHADOWABLE) for v in spec.shadows]:
        stage = stages.get(version)
        if stage is None:
            raise Conflict(f"{model} has no version {version!r}; versions: "
                           f"{', '.join(sorted(stages)) or 'none'}")
        if stage not in allowed:
            raise Conflict(f"{model} version {version} is {stage}, not routable; it must be "
                           f"one of {', '.join(sorted(allowed))} (promote it first: "
                           f"appliance models promote {model} {version} --to canary)")
        if ready is not None and version not in ready:
            raise Conflict(f"{model} version {version} is not loaded in this server; check "
                           f"appliance models show {model}")
    if spec.policy == "canary" and spec.candidate == spec.baseline:
        raise BadRequest("route: the canary's candidate and baseline are the same version")
    return spec
