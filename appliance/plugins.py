"""The plugin manager: hook specs, built-in plugins, then the ``appliance`` entry points.

Set ``APPLIANCE_DISABLE_PLUGIN_AUTOLOAD=1`` to skip entry points (tests register what
they need). A plugin that fails to import is logged by name and skipped; the others
keep working (:attr:`AppliancePluginManager.failed_plugins` lists them). Set
``APPLIANCE_TRACE_HOOKS=1`` to log every hook call, its arguments and its results at
debug level (``log_level = "debug"``).
"""

from __future__ import annotations

import importlib.metadata
import logging
import os
from typing import Any

import pluggy

from . import hookspecs

log = logging.getLogger(__name__)

DEFAULT_PLUGINS: tuple[str, ...] = ("appliance.default_hooks",)
ENTRY_POINT_GROUP = "appliance"


def _load_entry_points(pm: pluggy.PluginManager) -> list[tuple[str, str]]:
    """Register each entry point of the group; return (name, error) for those that failed."""
    failed: list[tuple[str, str]] = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:  # a broken plugin must not take down the others
            log.error("plugin %r (%s) failed to import: %s: %s", ep.name, ep.value,
                      type(exc).__name__, exc)
            failed.append((ep.name, f"{type(exc).__name__}: {exc}"))
            continue
        pm.register(plugin, name=ep.name)
    return failed


class AppliancePluginManager(pluggy.PluginManager):
    """pluggy's manager for the ``appliance`` project, remembering which entry-point
    plugins failed to import (shown by ``appliance hardware`` and the start-up log)."""

    def __init__(self) -> None:
        super().__init__("appliance")
        #: (entry-point name, error) of every plugin that failed to import
        self.failed_plugins: list[tuple[str, str]] = []


def get_plugin_manager(*, autoload: bool | None = None,
                       extra: tuple[Any, ...] = ()) -> AppliancePluginManager:
    """A fresh plugin manager with built-ins, ``extra`` plugins and (unless disabled)
    every plugin registered under the ``appliance`` entry-point group."""
    pm = AppliancePluginManager()
    pm.add_hookspecs(hookspecs)
    for name in DEFAULT_PLUGINS:
        mod = importlib.import_module(name)
        pm.register(mod, name=name)
    for plugin in extra:
        pm.register(plugin)
    if autoload is None:
        autoload = os.environ.get("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", "") in ("", "0")
    pm.failed_plugins = _load_entry_points(pm) if autoload else []
    if os.environ.get("APPLIANCE_TRACE_HOOKS"):
        pm.trace.root.setwriter(log.debug)
        pm.enable_tracing()
    return pm


def installed_backends(pm: pluggy.PluginManager) -> list[Any]:
    """Every backend any plugin provides, in registration order."""
    backends: list[Any] = []
    for result in pm.hook.appliance_backends():
        backends.extend(result or [])
    return backends
