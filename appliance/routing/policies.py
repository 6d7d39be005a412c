"""Stored routes as the request path sees them: a split, a key, and what to record.

:class:`StoredPolicy` is rebuilt (cheaply) whenever the served versions or the stored
route change; what must outlive a rebuild — the canary's windows and current weight, a
bandit's weights, the shadow comparisons, the seeded draw sequence, the dry-run log —
lives in the route's :class:`RouteRuntime`, kept per (model, revision) by
:mod:`.router`.

``decide`` is one key lookup (sticky routes), one hash or one draw, one bisect: a few
microseconds at most. A version that is chosen but not ready (it failed, or is
loading) yields the model's default route instead, so a broken candidate never fails a
client's request. A ``dry_run`` route decides, records what it would have done, and
answers with the default route.
"""

from __future__ import annotations

import random
import threading
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..runtime.served import ServedVersion
from .buckets import BUCKETS, Split, bucket, check_key, salt_for
from .observations import ArmWindow, score_of
from .policy import DefaultRoute, RouteDecision
from .spec import RouteSpec
from .store import StoredRoute

__all__ = ["RouteContext", "RouteRuntime", "StoredPolicy"]

#: dry-run decisions kept per route (the newest)
DRY_RUN_LOG = 1000


@dataclass(slots=True)
class RouteContext:
    """What a route may read of a request: its headers (raw ASGI pairs), the caller's
    token subject (None while auth is off) and the request's parameters."""

    headers: Sequence[tuple[bytes, bytes]] = ()
    subject: str | None = None
    parameters: Mapping[str, Any] | None = None


@dataclass
class RouteRuntime:
    """A stored route's state in this process (one per model and revision)."""

    model: str
    revision: int
    seed: int
    windows: dict[str, ArmWindow] = field(default_factory=dict)
    #: a canary's candidate share now, percent (None: not started)
    canary_weight: float | None = None
    #: a bandit's weights now (None: uniform until the first re-weighting)
    bandit_weights: dict[str, float] | None = None
    dry_log: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=DRY_RUN_LOG))
    dry_counts: Counter[str] = field(default_factory=Counter)
    decisions: int = 0
    #: the bandit's assignment sink (routing/controller.py sets it): (request id, arm, share)
    on_assign: Any = None
    on_error: Any = None
    shadow_comparisons: dict[str, Any] = field(default_factory=dict)
    rng: random.Random = field(init=False)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def window(self, version: str) -> ArmWindow:
        found = self.windows.get(version)
        if found is None:
            found = self.windows[version] = ArmWindow()
        return found


def _header(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode("latin-1")
    return None


class StoredPolicy:
    """The request path's view of a stored route (see the module docstring)."""

    stored = True

    def __init__(self, route: StoredRoute, versions: Mapping[str, ServedVersion],
                 runtime: RouteRuntime, fallback: DefaultRoute | None) -> None:
        spec = route.spec
        self.route, self.spec, self.runtime, self.fallback = route, spec, runtime, fallback
        self.model = route.model
        self.dry_run = spec.dry_run
        sticky = spec.sticky
        self._header = sticky.header.lower().encode() if sticky and sticky.header else None
        self._subject = bool(sticky and sticky.subject)
        self._parameter = sticky.parameter if sticky else None
        self.needs_parameters = self._parameter is not None
        self._salt = salt_for(sticky.salt if sticky else None, route.model)
        self._keyed = self.keyed = sticky is not None
        self._versions = versions
        self._table: tuple[Split | None, tuple[RouteDecision, ...]] = (None, ())
        self.reweigh()
        self.shadows = tuple(versions[v] for v in spec.shadows if v in versions)
        self.shadow_share = spec.shadow_percent / 100
        self.observes = spec.policy in ("canary", "bandit", "weighted", "sticky")
        self._test = self._test_decision(spec, versions)

    @property
    def split(self) -> Split | None:
        """The split in force (None: no routed version is served here)."""
        return self._table[0]

    def reweigh(self) -> None:
        """Rebuild the split from the spec and the runtime (a canary's step, a bandit's
        weights): one assignment, so a request sees the old split or the new one."""
        weights, labels = self._weights(self.spec, self.runtime)
        present = [(v, w) for v, w in weights if v in self._versions]
        if present and sum(w for _, w in present) <= 0:
            present = [(v, 1.0) for v, _ in present]
        split = Split(present) if present else None
        self._table = (split, tuple(RouteDecision(self._versions[v], labels[v])
                                    for v, _ in present))

    @staticmethod
    def _weights(spec: RouteSpec, runtime: RouteRuntime
                 ) -> tuple[list[tuple[str, float]], dict[str, str]]:
        if spec.policy == "canary":
            assert spec.candidate and spec.baseline  # check_spec filled them in
            share = runtime.canary_weight if runtime.canary_weight is not None else (
                (spec.steps or [5.0])[0])
            return ([(spec.candidate, share), (spec.baseline, 100 - share)],
                    {spec.candidate: "canary", spec.baseline: "production"})
        if spec.policy == "bandit":
            arms = spec.arms or []
            chosen = runtime.bandit_weights or {arm: 1.0 for arm in arms}
            return [(a, chosen.get(a, 0.0)) for a in arms], {a: f"arm:{a}" for a in arms}
        if spec.policy == "shadow":
            assert spec.baseline
            return [(spec.baseline, 100.0)], {spec.baseline: "production"}
        weights = spec.weights or {}
        return list(weights.items()), {v: f"arm:{v}" for v in weights}

    def _test_decision(self, spec: RouteSpec, versions: Mapping[str, ServedVersion]
                       ) -> RouteDecision | None:
        named = spec.test.version if spec.test else None
        target = named or spec.candidate or (spec.shadows[0] if spec.shadows else None)
        if target is None and spec.policy == "bandit":
            target = next((a for a in spec.arms or [] if a != spec.baseline), None)
        served = versions.get(target) if target else None
        return RouteDecision(served, "test") if served is not None else None

    # -- the request path ------------------------------------------------------------
    def _position(self, ctx: RouteContext | None) -> float:
        if self._keyed and ctx is not None:
            key = None
            if self._header is not None:
                key = _header(ctx.headers, self._header)
                source = f"header {self.spec.sticky.header}"  # type: ignore[union-attr]
            elif self._subject:
                key, source = ctx.subject, "the token's subject"
            elif ctx.parameters is not None:
                raw = ctx.parameters.get(self._parameter or "")
                key = None if raw is None else str(raw)
                source = f"parameter {self._parameter}"
            if key is not None:
                return bucket(self._salt, check_key(key, source))
        return self.runtime.rng.random() * BUCKETS

    def decide(self, ctx: RouteContext | None = None) -> RouteDecision:
        """The version for a production request that names none."""
        split, decisions = self._table
        if split is None:
            return self._fallback()
        chosen = decisions[split.choose(self._position(ctx))]
        self.runtime.decisions += 1
        if self.dry_run:
            self._log_dry(chosen)
            return self._fallback()
        if not chosen.served.ready:
            return self._fallback()
        return chosen

    def primary(self) -> RouteDecision:
        """The default route's version (or the route's first ready one): no draw."""
        if self.fallback is not None:
            return self.fallback.decision
        decisions = self._table[1]
        ready = [d for d in decisions if d.served.ready]
        return (ready or list(decisions) or [self._fallback()])[0]

    def decide_test(self) -> RouteDecision | None:
        """Where a test request that names no version goes (None: the default route)."""
        test = self._test
        return test if test is not None and test.served.ready else None

    def _fallback(self) -> RouteDecision:
        if self.fallback is None:
            from ..errors import ServiceUnavailable
            raise ServiceUnavailable(f"model {self.model!r} has no ready version to answer")
        return self.fallback.decision

    def _log_dry(self, chosen: RouteDecision) -> None:
        runtime = self.runtime
        version = chosen.served.record.version
        runtime.dry_counts[f"{chosen.label}={version}"] += 1
        runtime.dry_log.append({"n": runtime.decisions, "version": version,
                                "label": chosen.label})

    def observe(self, decision: RouteDecision, ok: bool, seconds: float,
                outputs: Mapping[str, Any] | None, request_id: str | None) -> None:
        """A production request this route decided has been answered (or failed)."""
        if self.dry_run:
            return  # a dry run changes nothing, its own records included
        version = decision.served.record.version
        runtime = self.runtime
        if self.spec.policy == "canary":
            runtime.window(version).observe(ok, seconds,
                                            score_of(outputs) if ok and outputs else None)
        elif runtime.on_assign is not None:  # bandit, weighted, sticky
            runtime.on_assign(request_id, version, ok)
