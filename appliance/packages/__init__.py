"""Reproducible, content-addressed model packages.

A package is a directory (or a ``.tar`` built from one by :func:`build_package`) holding a
manifest, ``model.toml`` or ``model.json``, and exactly the files it lists with their
sha256 and size. :func:`push_package` installs one into the registry atomically. The
manifest reference is ``docs/packages.md``.
"""

from .archive import build_package, safe_extract
from .install import CRASH_ENV, CRASH_STEPS, push_package
from .manifest import MANIFEST_NAMES, Manifest, dump_manifest, load_manifest

__all__ = ["CRASH_ENV", "CRASH_STEPS", "MANIFEST_NAMES", "Manifest", "build_package",
           "dump_manifest", "load_manifest", "push_package", "safe_extract"]
