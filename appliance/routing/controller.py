"""The routing thread: canaries analysed and stepped, bandits re-weighted, rewards joined.

Every ``[routing] tick_s`` (default 1 s), off the request path:

* **bandits**: buffered assignments are written to ``rewards.db`` (:mod:`appliance.
  experiments.rewards`), pending ones past the route's ``reward_wait_s`` get its
  ``default_reward``, and the weights are recomputed from the committed rows
  (:func:`appliance.experiments.bandit.reweight`: guardrails, burn-in, floor, Thompson),
  so the posterior after a ``kill -9`` is exactly the committed one. An arm the
  guardrail excludes, and a sample-ratio mismatch, are registry events (so audit
  records) and alerts.
* **canaries**: every route's ``interval_s``, :mod:`.canary_runner` compares the
  candidate's window with production's and steps, promotes or rolls back.
* **shadow reports** are stored every ``REPORT_S`` so ``appliance routes shadow-report``
  reads them without a server.
"""

from __future__ import annotations

import itertools
import json
import logging
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..experiments.bandit import BanditConfig, reweight
from ..experiments.rewards import RewardStore
from ..experiments.srm import ExpectedCounts, check_srm
from ..registry.db import now as iso_now
from ..registry.db import transaction
from ..registry.events import record_event
from .canary_runner import CanaryRunner
from .policies import RouteRuntime, StoredPolicy
from .router import Router
from .settings import RoutingSettings
from .spec import routed_versions
from .store import StoredRoute

__all__ = ["RoutingController"]

log = logging.getLogger(__name__)

#: requests without an ``id`` are assigned under an anonymous one (never rewarded): a
#: per-process prefix and a counter, cheaper than a uuid per request
_ANON = uuid.uuid4().hex[:12]
_COUNTER = itertools.count(1)
#: policies whose assignments are kept in rewards.db
EXPERIMENTS = ("bandit", "weighted", "sticky")
#: seconds between stored shadow reports
REPORT_S = 10.0


class _Bandit:
    """One bandit route's process-side state: SRM expectations and what was reported."""

    def __init__(self, route: StoredRoute) -> None:
        self.config = BanditConfig(reward=route.spec.reward, **route.spec.bandit)
        self.expected = ExpectedCounts()
        self.assigned_since = 0
        self.excluded: set[str] = set()
        self.srm_alarmed = False
        #: committed assignments per arm when this process began watching (the SRM test
        #: compares what was assigned since then with the weights in force since then)
        self.offset: dict[str, int] | None = None


class RoutingController:
    """Ticks the stored routes' analyses (see the module docstring)."""

    def __init__(self, router: Router, settings: RoutingSettings, data_dir: Path, *,
                 registry: Any, repository: Any, app_settings: Any, alerts: Any = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.router, self.settings, self.clock = router, settings, clock
        self.registry, self.alerts = registry, alerts
        self.rewards = RewardStore(data_dir / "rewards.db")
        self.canaries = CanaryRunner(router, registry, repository, app_settings, alerts,
                                     clock)
        self._bandits: dict[str, _Bandit] = {}
        self._rng = np.random.default_rng(settings.reward_seed)
        self._last_report = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._tick_lock = threading.Lock()
        router.on_runtime = self.wire
        router.canary_of = self.canaries.analysis

    # -- wiring and lifetime ------------------------------------------------------------
    def wire(self, runtime: RouteRuntime, route: StoredRoute) -> None:
        """A new route runtime: bandit, weighted and sticky routes get their assignment
        sink (each answered production request's arm, for rewards and the experiment
        report)."""
        if route.spec.policy not in EXPERIMENTS:
            return
        bandit = None
        if route.spec.policy == "bandit":
            bandit = self._bandits[route.model] = _Bandit(route)
        arms = routed_versions(route.spec)
        fixed = {v: w / 100 for v, w in (route.spec.weights or {}).items()}
        store, model, clock = self.rewards, route.model, self.clock

        def assign(request_id: str | None, arm: str, ok: bool) -> None:
            weights = runtime.bandit_weights if bandit is not None else fixed
            share = weights.get(arm, 0.0) if weights else 1 / max(len(arms), 1)
            rid = request_id or f"anon-{_ANON}-{next(_COUNTER)}"
            store.assign(rid, model, arm, share, clock())
            if bandit is not None:
                bandit.assigned_since += 1
            if not ok:
                store.record_error(rid)

        runtime.on_assign = assign

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="routing", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None
        try:
            self.rewards.close()
        except Exception:
            log.exception("closing rewards.db failed")
        self.registry.close()

    def _run(self) -> None:
        while not self._stop.wait(self.settings.tick_s):
            try:
                self.tick()
            except Exception:  # keep ticking: one bad route must not stop the others
                log.exception("routing tick failed")

    # -- one tick -------------------------------------------------------------------------
    def tick(self) -> None:
        """Everything due now (tests call this with a controllable clock)."""
        with self._tick_lock:
            now = self.clock()
            self.rewards.flush()
            for model, policy in list(self.router.policies.items()):
                spec = policy.spec
                try:
                    if spec.policy == "bandit":
                        self._tick_bandit(model, policy, now)
                    elif spec.policy == "canary":
                        self.canaries.tick(model, policy, now)
                except Exception:
                    log.exception("routing %s failed this tick", model)
            if now - self._last_report >= REPORT_S:
                self._last_report = now
                self._store_reports()

    def reward(self, request_id: str, value: float) -> str | None:
        """Join a reward from ``POST /v1/feedback``: the outcome ("accepted", "duplicate",
        "expired", "errored"), or None when no bandit assigned that request id."""
        self.rewards.flush()
        outcome = self.rewards.reward(request_id, value, self.clock())
        return None if outcome == "unknown" else outcome

    def _tick_bandit(self, model: str, policy: StoredPolicy, now: float) -> None:
        bandit = self._bandits.get(model)
        if bandit is None:
            return
        spec, runtime = policy.spec, policy.runtime
        arms = spec.arms or []
        current = runtime.bandit_weights or {a: 1 / len(arms) for a in arms}
        if bandit.assigned_since:
            bandit.expected.add(current, bandit.assigned_since)
            bandit.assigned_since = 0
        self.rewards.expire(now, spec.reward_wait_s, spec.default_reward, model=model)
        states = self.rewards.arm_states(model)
        states = {a: states.get(a) or _empty() for a in arms}
        baseline = spec.baseline if spec.baseline in arms else None
        result = reweight(states, bandit.config, self._rng, baseline=baseline)
        runtime.bandit_weights = result.weights
        policy.reweigh()
        for arm, evidence in result.excluded.items():
            if arm not in bandit.excluded:
                bandit.excluded.add(arm)
                self._event(model, "route.bandit-exclude", arm, {
                    "evidence": _plain(evidence), "reason": "error-rate guardrail"})
                self._alert("BanditArmExcluded", "warning", model, arm,
                            f"arm {arm} excluded: error rate {evidence.error_rate:.4f} vs "
                            f"baseline {evidence.baseline_error_rate:.4f} "
                            f"(p={evidence.p_value:.2g}, {evidence.test})")
        if bandit.offset is None:
            bandit.offset = {a: states[a].assignments for a in arms}
            bandit.expected = ExpectedCounts()
        observed = {a: states[a].assignments - bandit.offset.get(a, 0) for a in arms}
        expected = bandit.expected.totals()
        if sum(observed.values()) < 100 or not expected:
            return
        srm = check_srm(observed, expected)
        if srm.alarm and not bandit.srm_alarmed:
            bandit.srm_alarmed = True
            self._event(model, "route.srm", None, {"srm": _plain(srm)})
            self._alert("SampleRatioMismatch", "critical", model, None,
                        f"assignments do not match the weights (chi2 p={srm.p_value:.2g})")

    # -- records --------------------------------------------------------------------------
    def _event(self, model: str, action: str, version: str | None,
               detail: dict[str, Any]) -> None:
        """A registry event (the audit bridge copies it into the audit chain)."""
        with transaction(self.registry.db):
            record_event(self.registry.db, actor="routing", action=action, model=model,
                         version=version, detail=detail)

    def _alert(self, name: str, severity: str, model: str, version: str | None,
               summary: str) -> None:
        if self.alerts is None:
            return
        labels = {"model": model, **({"version": version} if version else {})}
        try:
            self.alerts.fire(name, severity, labels, {"summary": summary}, source="routing")
        except Exception:
            log.exception("raising %s for %s failed", name, model)

    def _store_reports(self) -> None:
        for model, policy in list(self.router.policies.items()):
            comparisons = policy.runtime.shadow_comparisons
            if not comparisons:
                continue
            body = json.dumps({v: c.report() for v, c in list(comparisons.items())},
                              default=str)
            with transaction(self.registry.db):
                self.registry.db.execute(
                    "INSERT INTO route_reports (model, kind, body, updated_at) VALUES "
                    "(?, 'shadow', ?, ?) ON CONFLICT (model, kind) DO UPDATE SET "
                    "body = excluded.body, updated_at = excluded.updated_at",
                    [model, body, iso_now()])


def _empty() -> Any:
    from ..experiments.bandit import ArmState
    return ArmState()


def _plain(value: Any) -> Any:
    """A dataclass result as JSON-ready builtins."""
    from dataclasses import asdict, is_dataclass
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _plain(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, np.integer, np.bool_)):
        return value.item()
    return value
