"""Reproducible, content-addressed model packages, and the one install path.

A package is a directory (or a ``.tar`` built from one by :func:`build_package`) holding a
manifest, ``model.toml`` or ``model.json``, and exactly the files it lists with their
sha256 and size. :func:`push_package` installs one into the registry atomically;
:func:`import_model` (``models add``) installs a bare model file the same way
(:mod:`.staging` is the step both share). The manifest reference is ``docs/packages.md``.

The install modules are imported on first use: the security scan imports
:mod:`.archive` to read tar files, and the install path imports the scan.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .archive import build_package, safe_extract
from .manifest import MANIFEST_NAMES, Manifest, dump_manifest, load_manifest

if TYPE_CHECKING:
    from .importer import import_model
    from .install import CRASH_ENV, CRASH_STEPS, push_package

__all__ = ["CRASH_ENV", "CRASH_STEPS", "MANIFEST_NAMES", "Manifest", "build_package",
           "dump_manifest", "import_model", "load_manifest", "push_package", "safe_extract"]

_LAZY = {"CRASH_ENV": "install", "CRASH_STEPS": "install", "push_package": "install",
         "import_model": "importer"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from importlib import import_module

        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
