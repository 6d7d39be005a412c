"""The wheelhouse of a bundle: every wheel the target needs, downloaded for its platform
(not this machine's) by ``pip download --only-binary=:all:``, pinned by constraints.txt.

A pinned package with no wheel for the target refuses the bundle at build time, naming
the package and the platform, rather than failing later on a box with no network.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from ..errors import ApplianceError
from .platforms import Target

#: demo models that ship inside a PyPI package; installed --no-deps (as ./dev.sh does) so
#: their own pins (magika's onnxruntime) stay out of the environment
DEMO_PACKAGES = ("magika",)
#: pip's two ways of saying so: without and with constraints in play
_NO_MATCH = re.compile(r"No matching distribution found for (?P<name>[A-Za-z0-9._-]+)")
_UNAVAILABLE = re.compile(r"no matching distributions available for your environment:\n"
                          r"(?P<names>(?:[ \t]+\S+\n?)+)")
_OFFLINE = ("NewConnectionError", "Network is unreachable", "Temporary failure in name "
            "resolution", "Failed to establish a new connection")


class BundleRefused(ApplianceError):
    """The bundle cannot be built for this target (a missing wheel, no network)."""


def pip_download(requirements: list[str], *, target: Target, python: str, dest: Path,
                 constraints: Path, no_deps: bool = False) -> None:
    """Download wheels of ``requirements`` (and their dependencies unless ``no_deps``)
    for ``target`` and CPython ``python`` into ``dest``; BundleRefused naming the package
    and platform when pip finds none."""
    cmd = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check",
           "--progress-bar", "off", "--only-binary=:all:", "--implementation", "cp",
           "--python-version", python, "-c", str(constraints), "-d", str(dest)]
    for tag in target.pip_platforms():
        cmd += ["--platform", tag]
    cmd += ["--no-deps"] if no_deps else []
    proc = subprocess.run(cmd + requirements, capture_output=True, text=True)
    if proc.returncode != 0:
        raise explain_failure(proc.stdout + proc.stderr, target=target, python=python)


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def explain_failure(output: str, *, target: Target, python: str) -> BundleRefused:
    """Turn pip's output into one message: which pinned package has no wheel for which
    platform, and what needs it (pip stops at the first), or that the index could not be
    reached."""
    if any(marker in output for marker in _OFFLINE):
        return BundleRefused("cannot reach the package index to download wheels: build "
                             "the bundle on a machine with access to it (or to a mirror "
                             "set in pip.conf)")
    found = _UNAVAILABLE.search(output) or _NO_MATCH.search(output)
    if found is None:
        tail = "\n".join(line for line in output.splitlines()
                         if not line.startswith(("WARNING", "Looking in")))[-2000:]
        return BundleRefused(f"pip download failed for {target.tag}:\n{tail}")
    names = (found["names"].split() if "names" in found.groupdict() else [found["name"]])
    name = names[0]
    # "appliance[cpu,openvino] 0.1.0 depends on openvino==2026.4.1; extra == "openvino""
    need = next((m for m in re.finditer(r"^\s*(?P<who>\S+) \S+ depends on (?P<req>[^;\s]+)"
                                        r"(?:; (?P<marker>.*))?$", output, re.M)
                 if _norm(re.split(r"[=<>!~\[ ]", m["req"])[0]) == _norm(name)), None)
    req = need["req"] if need else name
    extra = re.search(r'extra == "([^"]+)"', need["marker"] or "") if need else None
    advice = (f"leave out the extra {extra[1]!r} (--extras), or target a platform with a "
              f"newer C library (e.g. manylinux_2_35_{target.arch})" if extra else
              "the appliance itself needs it, so this platform is not supported")
    also = f" (also without a wheel: {', '.join(names[1:])})" if names[1:] else ""
    return BundleRefused(f"no wheel of {req}{also} for platform {target.tag} and CPython "
                         f"{python} ({target.libc_floor} or older): {advice}")
