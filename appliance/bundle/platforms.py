"""Target platforms of a bundle: a PEP 600 / PEP 656 tag such as ``manylinux_2_28_x86_64``.

pip's ``--platform`` takes tags literally (it widens only the legacy ``manylinux2014`` /
``manylinux2010`` aliases), so a ``manylinux_2_28`` target is expanded here into every
tag a box with glibc 2.28 accepts: ``manylinux_2_28`` down to ``manylinux_2_17`` (and
below on x86), plus the legacy aliases.
"""

from __future__ import annotations

import platform
import re

import msgspec

from ..errors import ConfigError

#: the platforms the project builds and tests bundles for (others are tried, not promised)
SUPPORTED = ("manylinux_2_28_x86_64", "manylinux_2_28_aarch64")
_TAG = re.compile(r"(?P<libc>manylinux|musllinux)_(?P<major>\d+)_(?P<minor>\d+)_(?P<arch>\w+)")
#: legacy manylinux aliases: (glibc minor, arches they were defined for)
_LEGACY = (("manylinux2014", 17, ("x86_64", "i686", "aarch64", "armv7l", "ppc64", "ppc64le",
                                  "s390x")),
           ("manylinux2010", 12, ("x86_64", "i686")),
           ("manylinux1", 5, ("x86_64", "i686")))


class Target(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed platform tag."""

    tag: str
    libc: str  # "manylinux" (glibc) or "musllinux"
    version: tuple[int, int]
    arch: str

    @property
    def libc_floor(self) -> str:
        """The C library the tag promises, as an operator reads it: "glibc 2.28"."""
        name = "glibc" if self.libc == "manylinux" else "musl"
        return f"{name} {self.version[0]}.{self.version[1]}"

    def pip_platforms(self) -> list[str]:
        """Every tag a box of this platform accepts, most specific first."""
        major, minor = self.version
        if self.libc == "musllinux":
            return [f"musllinux_{major}_{m}_{self.arch}" for m in range(minor, -1, -1)]
        lowest = 5 if self.arch in ("x86_64", "i686") else 17
        tags = [f"manylinux_{major}_{m}_{self.arch}" for m in range(minor, lowest - 1, -1)]
        tags += [f"{alias}_{self.arch}" for alias, m, arches in _LEGACY
                 if self.arch in arches and major == 2 and minor >= m]
        return tags


def parse_target(tag: str) -> Target:
    """A :class:`Target` for ``tag``; ConfigError if it is not a manylinux/musllinux tag."""
    m = _TAG.fullmatch(tag)
    if m is None:
        raise ConfigError(f"unknown platform {tag!r}: give a tag such as "
                          f"{' or '.join(SUPPORTED)} (manylinux_2_<glibc minor>_<arch>, "
                          f"or musllinux_1_<minor>_<arch>)")
    return Target(tag=tag, libc=m["libc"], version=(int(m["major"]), int(m["minor"])),
                  arch=m["arch"])


def host_target() -> str:
    """The supported tag for this machine's architecture (x86_64 or aarch64)."""
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(platform.machine().lower(),
                                                          platform.machine())
    return f"manylinux_2_28_{machine}"


def wheel_libc(filename: str) -> tuple[int, int] | None:
    """The oldest C library a wheel runs on, from its platform tags (``None`` for a pure
    wheel): ``numpy-…-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl`` -> (2, 27)."""
    platforms = filename.removesuffix(".whl").split("-")[-1].split(".")
    legacy = {alias: m for alias, m, _ in _LEGACY}
    found = []
    for tag in platforms:
        m = _TAG.fullmatch(tag)
        if m:
            found.append((int(m["major"]), int(m["minor"])))
        elif tag.split("_", 1)[0] in legacy:
            found.append((2, legacy[tag.split("_", 1)[0]]))
    return min(found) if found else None


def libc_floor(filenames: list[str]) -> tuple[int, int] | None:
    """The oldest C library every one of ``filenames`` runs on (the newest of their
    floors), or None when all are pure wheels."""
    floors = [f for f in map(wheel_libc, filenames) if f is not None]
    return max(floors) if floors else None
