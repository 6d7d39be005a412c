"""Declarative alert rules, evaluated over a snapshot of observations.

A snapshot is a plain dict the caller assembles (health checks, drift detection,
probes, the metrics scrape); each section maps a model name to what was observed::

    {"health":  {"fraud": "down", "bc": "up"},
     "drift":   {"fraud": {"status": "warning", "score": 0.31}},
     "probes":  {"bc": {"ok": False, "detail": "expected class 1, got 0"}},
     "metrics": {"latency_p95_ms": {"bc": 412.0}}}

A :class:`Rule` names a section by dotted ``path`` (``metrics.latency_p95_ms``),
optionally a ``field`` inside each model's value, and a comparison. For every model in
the section the rule either holds (the alert ``<name>{model=...}`` fires) or does not
(it resolves). A section absent from the snapshot decides nothing, so a caller that
only knows drift does not resolve health alerts. Built-in rules are data
(:data:`BUILTIN_RULES`); ``[alerts.rules.<Name>]`` changes their threshold or severity
and ``[[alerts.custom_rules]]`` adds more.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from typing import Any

from .model import Severity
from .settings import AlertSettings

_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, ">=": operator.ge,
    "<": operator.lt, "<=": operator.le}


@dataclass(frozen=True, slots=True)
class Rule:
    """``<name>`` fires for each model whose ``path[.field]`` value ``op`` ``value``."""

    name: str
    path: str
    op: str
    value: Any
    severity: Severity = "warning"
    field: str | None = None
    #: the ``summary`` annotation; {model}, {observed} and {value} are filled in
    summary: str = ""

    def holds(self, observed: Any) -> bool:
        """Whether the observation meets the condition (False when it is not comparable)."""
        if self.field is not None:
            if not isinstance(observed, dict) or self.field not in observed:
                return False
            observed = observed[self.field]
        try:
            return bool(_OPS[self.op](observed, self.value))
        except TypeError:
            return False


BUILTIN_RULES: tuple[Rule, ...] = (
    Rule("ModelDown", "health", "==", "down", "critical",
         summary="model {model} is down"),
    Rule("DriftWarning", "drift", "==", "warning", "warning", field="status",
         summary="input drift on model {model} (warning)"),
    Rule("DriftCritical", "drift", "==", "critical", "critical", field="status",
         summary="input drift on model {model} (critical)"),
    Rule("ProbeFailed", "probes", "==", False, "warning", field="ok",
         summary="a probe of model {model} failed"),
    Rule("LatencySLOBreach", "metrics.latency_p95_ms", ">", 250.0, "warning",
         summary="p95 latency of model {model} is {observed} ms (objective {value} ms)"),
)


def configured_rules(settings: AlertSettings) -> list[Rule]:
    """The built-in rules with ``[alerts.rules.*]`` applied, then the custom ones."""
    rules = []
    for rule in BUILTIN_RULES:
        override = settings.rules.get(rule.name)
        if override is None:
            rules.append(rule)
            continue
        if not override.enabled:
            continue
        rules.append(replace(rule,
                             value=rule.value if override.value is None else override.value,
                             severity=override.severity or rule.severity))
    rules.extend(Rule(s.name, s.path, s.op, s.value, s.severity, s.field, s.summary)
                 for s in settings.custom_rules)
    return rules


def _section(snapshot: dict[str, Any], path: str) -> dict[str, Any] | None:
    value: Any = snapshot
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value if isinstance(value, dict) else None


@dataclass(frozen=True, slots=True)
class Outcome:
    """One rule on one model: fire (``holds``) or resolve."""

    rule: Rule
    model: str
    holds: bool
    observed: Any

    @property
    def labels(self) -> dict[str, str]:
        return {"model": self.model}

    @property
    def annotations(self) -> dict[str, str]:
        observed = self.observed
        if self.rule.field and isinstance(observed, dict):
            extra = {k: str(v) for k, v in observed.items() if k != self.rule.field}
            observed = observed.get(self.rule.field)
        else:
            extra = {}
        summary = self.rule.summary.format(model=self.model, observed=observed,
                                           value=self.rule.value)
        return {**extra, "summary": summary} if summary else extra


def evaluate(rules: list[Rule], snapshot: dict[str, Any]) -> Iterator[Outcome]:
    """Every (rule, model) the snapshot decides, with whether the rule holds."""
    for rule in rules:
        section = _section(snapshot, rule.path)
        if section is None:
            continue
        for model, observed in section.items():
            yield Outcome(rule, str(model), rule.holds(observed), observed)
