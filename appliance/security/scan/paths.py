"""Whether a location a model file names (ONNX external data, a TFLite external buffer
file) stays inside the package: not absolute, no ``..``, no symlink on the way."""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath


def outside_reason(root: Path, base: Path, location: str) -> str | None:
    """Why ``location`` (relative to ``base``, inside ``root``) is not a file inside the
    package: absolute, ``..``, through a symlink, outside, or missing. None when fine."""
    if not location:
        return "is empty"
    if (PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute()
            or location.startswith(("/", "\\")) or PureWindowsPath(location).drive):
        return "is an absolute path"
    parts = location.replace("\\", "/").split("/")
    if ".." in parts:
        return "has a '..' component"
    here = base
    for part in parts:
        here = here / part
        if here.is_symlink():
            return f"goes through the symlink {here.relative_to(root).as_posix()}"
    try:
        here.resolve().relative_to(root.resolve())
    except ValueError:
        return "resolves outside the package"
    if not here.is_file():
        return "is not a file in the package (list it in the variant's files)"
    return None
