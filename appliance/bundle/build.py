"""``appliance bundle build``: one tarball that installs the appliance on a box with no
network.

Layout (one top directory, ``appliance-<version>-<platform>/``)::

    install.sh               run as root: user, venv, config, data dir, systemd unit
    bundle.env               what the bundle is for (read by install.sh)
    SHA256SUMS               every other file, checked by install.sh before it installs
    constraints.txt          the pins the wheelhouse was resolved with
    wheels/                  the appliance wheel, its dependencies, pip, the demo packages
    profiles/*.toml          the hardware profiles (the appliance wheel carries them too)
    appliance.service, appliance.example.toml, sysusers.d/, tmpfiles.d/

Everything but the wheelhouse is taken out of the appliance wheel itself, so the bundle
ships exactly what that wheel was built with.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import re
import tarfile
import tempfile
import zipfile
from email.parser import Parser
from pathlib import Path

import msgspec

from ..errors import ConfigError
from .platforms import Target, libc_floor, parse_target, wheel_libc
from .sources import appliance_wheel
from .wheelhouse import DEMO_PACKAGES, pip_download

DEFAULT_EXTRAS = ("cpu", "openvino", "litert")
#: wheel member prefix -> place in the bundle (directories end in "/")
_FROM_WHEEL = {"appliance/_profiles/": "profiles/",
               "appliance/bundle/packaging/": "",
               "appliance/bundle/constraints.txt": "constraints.txt"}
_EXECUTABLE = {"install.sh"}
#: extras that install the same module and so exclude each other
_EXCLUSIVE = ({"cpu", "cuda"},)


class BundleSpec(msgspec.Struct, frozen=True, kw_only=True):
    """What to build: the target platform, its Python (major.minor) and the extras."""

    platform: str
    python: str = "3.11"
    extras: tuple[str, ...] = DEFAULT_EXTRAS


class BundleInfo(msgspec.Struct, frozen=True, kw_only=True):
    """What was built."""

    path: str
    top: str
    size_bytes: int
    wheels: list[str]
    platform: str
    python: str
    extras: list[str]
    libc_floor: str


def _check_target(spec: BundleSpec) -> Target:
    target = parse_target(spec.platform)
    if not re.fullmatch(r"3\.\d{1,2}", spec.python):
        raise ConfigError(f"--python {spec.python!r}: give the target's major.minor, "
                          f"e.g. 3.11")
    return target


def _check_extras(spec: BundleSpec, known_extras: set[str]) -> None:
    unknown = sorted(set(spec.extras) - known_extras)
    if unknown:
        raise ConfigError(f"unknown extra(s) {', '.join(unknown)}; the appliance has: "
                          f"{', '.join(sorted(known_extras))}")
    for group in _EXCLUSIVE:
        if group <= set(spec.extras):
            raise ConfigError(f"extras {' and '.join(sorted(group))} install the same "
                              f"module: pick one")


def _extract_shipped(wheel: zipfile.ZipFile, top: Path) -> None:
    for name in wheel.namelist():
        place = next((dst + name[len(src):] for src, dst in _FROM_WHEEL.items()
                      if name.startswith(src)), None)
        if not place or place.endswith("/"):
            continue
        out = top / place
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(wheel.read(name))
        out.chmod(0o755 if out.name in _EXECUTABLE else 0o644)


def _floor(target: Target, wheels: list[str]) -> tuple[str, str]:
    """(C library version every wheel runs on, text naming the wheel that sets it)."""
    floor = libc_floor(wheels) or target.version
    setter = [w.split("-")[0] for w in wheels if wheel_libc(w) == floor]
    name = "glibc" if target.libc == "manylinux" else "musl"
    version = ".".join(map(str, floor))
    return version, f"{name} {version}" + (f" ({', '.join(setter)})" if setter else "")


def _write_manifest(top: Path, values: dict[str, str]) -> None:
    for key, value in values.items():  # the file is sourced by install.sh
        if not re.fullmatch(r"[A-Za-z0-9._, +-]*", value):
            raise ConfigError(f"bundle value {key}={value!r} is not shell-safe")
    (top / "bundle.env").write_text(
        "# written by `appliance bundle build`; sourced by install.sh\n"
        + "".join(f'{k}="{v}"\n' for k, v in values.items()))
    sums = []
    for path in sorted(p for p in top.rglob("*") if p.is_file()):
        rel = path.relative_to(top).as_posix()
        sums.append(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {rel}\n")
    (top / "SHA256SUMS").write_text("".join(sums))


def build_bundle(spec: BundleSpec, output: Path) -> BundleInfo:
    """Build the bundle for ``spec`` into the tar file ``output`` (replaced atomically);
    ConfigError for a bad spec, BundleRefused when the target lacks a wheel."""
    target = _check_target(spec)
    with tempfile.TemporaryDirectory(prefix="appliance-bundle-") as tmp:
        wheel_path = appliance_wheel(Path(tmp) / "dist")
        with zipfile.ZipFile(wheel_path) as wheel:
            meta_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
            meta = Parser().parsestr(wheel.read(meta_name).decode())
            _check_extras(spec, set(meta.get_all("Provides-Extra") or []))
            top = Path(tmp) / f"appliance-{meta['Version']}-{target.tag}"
            _extract_shipped(wheel, top)
        wheels = top / "wheels"
        constraints = top / "constraints.txt"
        extras = f"[{','.join(spec.extras)}]" if spec.extras else ""
        # pip itself too, at the version building the bundle: the box's venv may be older
        pip = f"pip=={importlib.metadata.version('pip')}"
        pip_download([f"{wheel_path}{extras}", pip], target=target, python=spec.python,
                     dest=wheels, constraints=constraints)
        pip_download(list(DEMO_PACKAGES), target=target, python=spec.python, dest=wheels,
                     constraints=constraints, no_deps=True)
        names = sorted(p.name for p in wheels.glob("*.whl"))
        libc_version, floor = _floor(target, names)
        _write_manifest(top, {
            "APPLIANCE_VERSION": meta["Version"], "APPLIANCE_WHEEL": wheel_path.name,
            "PYTHON_VERSION": spec.python, "PLATFORM": target.tag, "ARCH": target.arch,
            "LIBC": "glibc" if target.libc == "manylinux" else "musl",
            "LIBC_VERSION": libc_version, "EXTRAS": ",".join(spec.extras),
            "DEMO_PACKAGES": " ".join(DEMO_PACKAGES)})
        output.parent.mkdir(parents=True, exist_ok=True)
        partial = output.with_name(output.name + ".partial")
        with tarfile.open(partial, "w") as tar:
            tar.add(top, arcname=top.name)
        os.replace(partial, output)
    return BundleInfo(path=str(output), top=top.name, size_bytes=output.stat().st_size,
                      wheels=names, platform=target.tag, python=spec.python,
                      extras=list(spec.extras), libc_floor=floor)
