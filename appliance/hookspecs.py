"""Every hook the appliance calls. Plugins implement them with ``@appliance.hookimpl``.

Hooks are called with keyword arguments; an implementation may accept fewer
arguments than the spec names. See ``docs/plugins.md`` for examples.
"""

from __future__ import annotations

from typing import Any

from pluggy import HookspecMarker

hookspec = HookspecMarker("appliance")


@hookspec
def appliance_backends() -> list[Any]:
    """Return the :class:`appliance.Backend` instances this plugin provides."""


@hookspec(firstresult=True)
def appliance_select_backend(model_format: str, candidates: list[Any], profile: Any) -> Any:
    """Pick the backend for a model of ``model_format`` among the available ``candidates``
    (in the profile's preference order); stops at the first non-None result."""


@hookspec
def appliance_hardware_facts() -> dict[str, Any] | None:
    """Return extra hardware facts this plugin can see (devices, accelerators), merged into
    the facts that profiles match against."""


@hookspec
def appliance_startup(settings: Any, registry: Any) -> None:
    """Called once when ``appliance serve`` has opened the registry, before models load."""


@hookspec(firstresult=True)
def appliance_box_key(data_dir: Any) -> bytes | None:
    """Return the box's 32-byte key-encryption key from a TPM, KMS or HSM (the audit
    checkpoint key is then derived from it too), or None to use
    ``<data_dir>/keys/box.key``; stops at the first non-None result."""
