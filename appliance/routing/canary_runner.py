"""Canary routes, driven: analyse every interval, then step up, promote or roll back.

Per canary route, every ``interval_s``: the candidate's window and production's (both
since the canary began, :mod:`.observations`) go to :func:`appliance.experiments.canary.
analyse`; :meth:`~appliance.experiments.canary_plan.CanaryPlan.advance` says what to do.

* **step-up**: the candidate's share moves to the next step in this process at once; the
  new state is stored with the analysis as a ``route.state`` event.
* **rollback** (a check failed): the candidate's weight is set to 0 in this process
  before anything is written — in-flight requests finish on the version they were
  given, new ones go to production — then, in one transaction, the state, the evidence
  (values, thresholds, n, test of each check) and a new route (production answers, the
  candidate is a shadow) are stored; the candidate's stage moves to ``shadow`` through
  the lifecycle, and a ``CanaryRolledBack`` alert fires.
* **promote** (the last step, 100 %, passed): the candidate is promoted to production
  through the lifecycle gates (approvals, freeze windows, signature), and the route is
  removed (the default route now sends everything to the new production). A gate that
  refuses keeps the canary at 100 % and raises ``CanaryPromotionBlocked``; it is retried
  every interval.
* **hold** (no data, too few samples, a breach not yet significant): nothing changes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from ..errors import ApplianceError
from ..experiments.canary import Analysis, CanaryThresholds, CanaryWindow, analyse
from ..experiments.canary_plan import CanaryPlan, CanaryState
from ..lifecycle.promotion import promote
from .policies import StoredPolicy
from .router import Router
from .store import delete_route, save_state, state_of

__all__ = ["CanaryRunner"]

log = logging.getLogger(__name__)
ACTOR = "routing"


@dataclass
class _Canary:
    revision: int
    plan: CanaryPlan
    thresholds: CanaryThresholds
    state: CanaryState
    last: float
    blocked: str | None = None
    analysis: Analysis | None = None


class CanaryRunner:
    """Drives every canary route of the process (see the module docstring)."""

    def __init__(self, router: Router, registry: Any, repository: Any, settings: Any,
                 alerts: Any, clock: Callable[[], float]) -> None:
        self.router, self.registry, self.repository = router, registry, repository
        self.settings, self.alerts, self.clock = settings, alerts, clock
        self._canaries: dict[str, _Canary] = {}

    def _canary(self, model: str, policy: StoredPolicy, now: float) -> _Canary:
        route, spec = policy.route, policy.spec
        found = self._canaries.get(model)
        if found is not None and found.revision == route.revision:
            return found
        plan = CanaryPlan(tuple(spec.steps or ()), spec.interval_s)
        stored = state_of(self.registry.db, model, route.revision) or {}
        try:
            state = CanaryState.from_dict(stored["canary"]) if "canary" in stored else None
        except ValueError as exc:
            log.warning("%s: stored canary state unusable (%s); starting over", model, exc)
            state = None
        if state is None:
            state = plan.start(now)
            policy.runtime.canary_weight = state.weight
        found = _Canary(route.revision, plan, CanaryThresholds(**spec.thresholds), state, now)
        self._canaries[model] = found
        return found

    def analysis(self, model: str) -> dict[str, Any] | None:
        """The latest analysis of ``model``'s canary (for ``GET /v1/routes/{model}``)."""
        found = self._canaries.get(model)
        if found is None:
            return None
        out: dict[str, Any] = {"state": found.state.to_dict(), "blocked": found.blocked}
        if found.analysis is not None:
            out["analysis"] = found.analysis.evidence()
        return out

    def tick(self, model: str, policy: StoredPolicy, now: float) -> None:
        """Analyse ``model``'s canary if its interval has passed, and act on it."""
        canary = self._canary(model, policy, now)
        if now - canary.last < canary.plan.interval_s:
            return
        canary.last = now
        spec, runtime = policy.spec, policy.runtime
        assert spec.candidate and spec.baseline
        if canary.state.status == "promoting":
            self._promote(model, policy, canary)
            return
        candidate = CanaryWindow(**runtime.window(spec.candidate).snapshot())
        production = CanaryWindow(**runtime.window(spec.baseline).snapshot())
        analysis = canary.analysis = analyse(candidate, production, canary.thresholds)
        state, action = canary.plan.advance(canary.state, analysis, now)
        if action == "hold":
            return
        if action == "rollback":
            self._rollback(model, policy, canary, state, analysis)
            return
        canary.state = state
        runtime.canary_weight = state.weight
        policy.reweigh()
        self._save(policy, canary, {"action": action, "weight": state.weight,
                                    "evidence": analysis.evidence()})
        if action == "promote":
            self._promote(model, policy, canary)

    def _save(self, policy: StoredPolicy, canary: _Canary, event: dict[str, Any],
              replace: Any = None) -> None:
        save_state(self.registry.db, policy.model, canary.revision,
                   {"canary_weight": canary.state.weight, "canary": canary.state.to_dict()},
                   actor=ACTOR, event=event, replace=replace)

    def _rollback(self, model: str, policy: StoredPolicy, canary: _Canary,
                  state: CanaryState, analysis: Analysis) -> None:
        spec = policy.spec
        assert spec.candidate
        policy.runtime.canary_weight = 0.0
        policy.reweigh()  # first: new requests stop reaching the candidate now
        canary.state = state
        evidence = analysis.evidence()
        shadow = msgspec.structs.replace(
            spec, policy="shadow", candidate=None, steps=None, thresholds={},
            shadows=[*spec.shadows, spec.candidate])
        self._save(policy, canary, {"action": "rollback", "version": spec.candidate,
                                    "reason": f"canary failed: {analysis.reason}",
                                    "evidence": evidence}, replace=shadow)
        try:
            promote(self.registry, self.settings, model, spec.candidate, "shadow",
                    actor=ACTOR, reason=f"canary rolled back: {analysis.reason}")
        except ApplianceError as exc:  # e.g. someone moved it meanwhile
            log.warning("%s: moving version %s back to shadow failed: %s", model,
                        spec.candidate, exc)
        self._alert("CanaryRolledBack", "critical", model, spec.candidate,
                    f"canary {spec.candidate} rolled back: {analysis.reason}")
        log.warning("%s: canary %s rolled back: %s", model, spec.candidate, analysis.reason)
        self._refresh()

    def _promote(self, model: str, policy: StoredPolicy, canary: _Canary) -> None:
        spec = policy.spec
        assert spec.candidate
        try:
            promote(self.registry, self.settings, model, spec.candidate, "production",
                    actor=ACTOR, reason="canary passed every step",
                    loader=self.repository.preload)
        except ApplianceError as exc:
            if canary.blocked != exc.message:
                canary.blocked = exc.message
                self._alert("CanaryPromotionBlocked", "warning", model, spec.candidate,
                            f"canary {spec.candidate} passed at 100 % but a lifecycle gate "
                            f"refused the promotion: {exc.message}")
            return
        canary.state = canary.plan.finish(canary.state)
        delete_route(self.registry.db, model, actor=ACTOR,
                     reason=f"canary {spec.candidate} promoted to production")
        self._refresh()

    def _refresh(self) -> None:
        try:
            self.repository.refresh()
        except Exception:  # the watcher retries on its next poll
            log.exception("refreshing routes after a canary decision failed")

    def _alert(self, name: str, severity: str, model: str, version: str,
               summary: str) -> None:
        if self.alerts is None:
            return
        try:
            self.alerts.fire(name, severity, {"model": model, "version": version},
                             {"summary": summary}, source="routing")
        except Exception:
            log.exception("raising %s for %s failed", name, model)
