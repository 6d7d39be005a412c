"""The stages a model version moves through, and which moves are legal.

    registered → shadow → canary → production → deprecated → archived
    (any serving stage) → failed;  failed → registered (retry)

A version in a *serving* stage is loaded by the server. The default route of a model (a
request without a version) goes to its ready ``production`` version; else to the most
recently demoted ready ``deprecated`` version (the previous production); else to the
newest ready ``registered`` version. ``shadow`` and ``canary`` versions are loaded but
get no default traffic (``appliance.routing.default_route``).
"""

from __future__ import annotations

from ..errors import Conflict

STAGES = ("registered", "shadow", "canary", "production", "deprecated", "archived", "failed")
SERVING = frozenset({"registered", "shadow", "canary", "production", "deprecated"})

TRANSITIONS: dict[str, tuple[str, ...]] = {
    "registered": ("shadow", "canary", "production", "archived", "failed"),
    "shadow": ("canary", "production", "registered", "archived", "failed"),
    "canary": ("production", "shadow", "registered", "archived", "failed"),
    "production": ("deprecated", "archived", "failed"),
    "deprecated": ("production", "archived", "failed"),  # → production is a rollback
    "archived": (),
    "failed": ("registered",),
}


def check_transition(model: str, version: str, current: str, target: str) -> None:
    """Conflict (409) listing the legal targets when ``current → target`` is not allowed."""
    if target not in STAGES:
        raise Conflict(f"unknown stage {target!r}; stages are: {', '.join(STAGES)}")
    legal = TRANSITIONS[current]
    if target not in legal:
        raise Conflict(f"{model} version {version} cannot go from {current} to {target}; "
                       f"legal from {current}: {', '.join(legal) or 'none (final stage)'}")
