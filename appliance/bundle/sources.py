"""The appliance wheel a bundle ships: built from the checkout when the package runs from
one, else repacked from the installed distribution's files (its RECORD), so
``appliance bundle build`` works from a pip install as well as from a checkout.

The wheel carries everything else the bundle needs from the repository root as package
data (symlinks in the checkout, copies in the wheel): ``appliance/_profiles`` (from
``hardware_profiles/``), ``appliance/bundle/packaging`` and ``constraints.txt``.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from ..errors import ConfigError

HERE = Path(__file__).resolve().parent
#: a checkout's root, when the package runs from one (editable install or PYTHONPATH)
CHECKOUT = HERE.parents[1]
#: what a wheel build needs from a checkout
_SOURCE_ITEMS = ("pyproject.toml", "README.md", "constraints.txt", "appliance", "plugins",
                 "hardware_profiles", "packaging")
#: dist-info files written by the installer, not part of the wheel
_INSTALLER_FILES = {"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"}


def is_checkout(root: Path = CHECKOUT) -> bool:
    """Whether ``root`` is the appliance's source tree (it has our pyproject.toml)."""
    project = root / "pyproject.toml"
    return project.is_file() and 'name = "appliance"' in project.read_text()


def appliance_wheel(dest: Path) -> Path:
    """The appliance wheel, written into ``dest``: built from the checkout, else repacked
    from the installed distribution."""
    return build_wheel(CHECKOUT, dest) if is_checkout() else repack_installed(dest)


def build_wheel(root: Path, dest: Path) -> Path:
    """``pip wheel --no-deps`` of a copy of ``root``, so the build writes nothing (build/,
    *.egg-info) into the checkout itself."""
    with tempfile.TemporaryDirectory(prefix="appliance-src-") as tmp:
        src = Path(tmp) / "src"
        src.mkdir()
        ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
        for item in _SOURCE_ITEMS:
            if (root / item).is_dir():
                shutil.copytree(root / item, src / item, symlinks=True, ignore=ignore)
            elif (root / item).exists():
                shutil.copy2(root / item, src / item)
        out = Path(tmp) / "out"
        proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet",
                               "--disable-pip-version-check", "-w", str(out), str(src)],
                              capture_output=True, text=True)
        wheels = sorted(out.glob("appliance-*.whl"))
        if proc.returncode != 0 or not wheels:
            raise ConfigError(f"building the appliance wheel from {root} failed:\n"
                              f"{proc.stderr.strip()[-2000:]}")
        dest.mkdir(parents=True, exist_ok=True)
        return Path(shutil.copy2(wheels[0], dest / wheels[0].name))


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def repack_installed(dest: Path, name: str = "appliance") -> Path:
    """A wheel made from the installed distribution's files (as its RECORD lists them):
    the package and its dist-info, without what the installer generated (scripts,
    bytecode, RECORD, INSTALLER, direct_url.json). pip regenerates those on install."""
    dist = importlib.metadata.distribution(name)
    direct = dist.read_text("direct_url.json")
    if direct and json.loads(direct).get("dir_info", {}).get("editable"):
        raise ConfigError(f"{name} is an editable install whose source tree is gone; "
                          f"run from the checkout or reinstall from a wheel")
    base = Path(str(dist.locate_file("")))
    info_dir = f"{dist.metadata['Name']}-{dist.version}.dist-info"
    tag = next((line.split(":", 1)[1].strip() for line in (dist.read_text("WHEEL") or "")
                .splitlines() if line.startswith("Tag:")), "py3-none-any")
    wheel = dest / f"{dist.metadata['Name']}-{dist.version}-{tag}.whl"
    dest.mkdir(parents=True, exist_ok=True)
    record: list[str] = []
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(dist.files or [], key=str):
            parts = f.parts
            if (".." in parts or "__pycache__" in parts or f.suffix == ".pyc"
                    or (parts[0].endswith(".dist-info") and f.name in _INSTALLER_FILES)):
                continue
            data = (base / f).read_bytes()
            zf.writestr(f.as_posix(), data)
            record.append(f"{f.as_posix()},{_record_hash(data)},{len(data)}")
        record.append(f"{info_dir}/RECORD,,")
        zf.writestr(f"{info_dir}/RECORD", "\n".join(record) + "\n")
    return wheel
