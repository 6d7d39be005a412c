"""Built-in hook implementations: the fallbacks a plugin can override."""

from __future__ import annotations

from typing import Any

from pluggy import HookimplMarker

hookimpl = HookimplMarker("appliance")


@hookimpl(trylast=True)
def appliance_select_backend(model_format: str, candidates: list[Any]) -> Any:
    """Take the first available candidate (candidates come in the profile's order)."""
    return candidates[0] if candidates else None
