"""The walk over a package: a directory, a ``.tar``, or one model file.

Refuses what could reach outside the package on its own (symlinks, devices, FIFOs,
sockets, archive members with absolute paths or ``..``: such an archive is not even
unpacked to look inside), and hands every regular file to the content checks: the
encryption marker, :mod:`.pickles`, then the check for its model format.
"""

from __future__ import annotations

import os
import stat
import tarfile
import tempfile
from pathlib import Path

from ...errors import BadRequest
from ..crypto_store import MAGIC as ENCRYPTED_MAGIC
from .onnx import scan_onnx
from .openvino_ir import scan_ir
from .pickles import HEAD_BYTES, pickle_reason
from .report import ScanPolicy, ScanReport
from .tflite import scan_tflite

MODEL_SUFFIXES = frozenset({".onnx", ".tflite", ".xml"})


def scan_package(path: Path, *, policy: ScanPolicy | None = None) -> ScanReport:
    """Scan a package directory, a package ``.tar``, or a single model file."""
    policy = policy or ScanPolicy()
    report = ScanReport(str(path))
    if not path.exists():
        report.add("refuse", path.name, "path", "does not exist: give the package "
                   "directory, its .tar, or a model file")
    elif path.is_dir():
        _scan_tree(path, report, policy)
    elif path.suffix.lower() not in MODEL_SUFFIXES and tarfile.is_tarfile(path):
        _scan_archive(path, report, policy)
    else:
        report.files.append(path.name)
        _scan_file(path.parent, path.name, report, policy)
    return report


def _scan_archive(path: Path, report: ScanReport, policy: ScanPolicy) -> None:
    from ...packages.archive import _member_path, safe_extract  # packages imports the scan

    try:
        with tarfile.open(path, mode="r:*") as tar:
            members = tar.getmembers()
    except (tarfile.TarError, OSError) as exc:
        report.add("refuse", path.name, "parse", f"is not a readable tar archive: {exc}")
        return
    for member in members:
        try:
            _member_path(member)
        except BadRequest as exc:
            report.add("refuse", member.name, "path", exc.message)
    if report.refused:
        return  # an archive that could escape is not unpacked, not even to look inside
    with tempfile.TemporaryDirectory(prefix="appliance-scan-") as tmp:
        try:
            safe_extract(path, Path(tmp))
        except BadRequest as exc:
            report.add("refuse", path.name, "path", exc.message)
            return
        _scan_tree(Path(tmp), report, policy)


def _scan_tree(root: Path, report: ScanReport, policy: ScanPolicy) -> None:
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            full = Path(dirpath) / name
            rel = full.relative_to(root).as_posix()
            mode = full.lstat().st_mode
            if stat.S_ISLNK(mode):
                report.add("refuse", rel, "symlink", f"is a symlink (to {os.readlink(full)!r}):"
                           " a package holds regular files only")
            elif stat.S_ISREG(mode):
                report.files.append(rel)
                _scan_file(root, rel, report, policy)
            elif not stat.S_ISDIR(mode):
                report.add("refuse", rel, "path", "is a device, FIFO or socket")


def _scan_file(root: Path, rel: str, report: ScanReport, policy: ScanPolicy) -> None:
    path = root / rel
    with path.open("rb") as f:
        head = f.read(HEAD_BYTES)
    if head.startswith(ENCRYPTED_MAGIC):
        report.add("warn", rel, "encrypted", "is encrypted (appliance at-rest format): its "
                   "contents cannot be scanned without the key")
        return
    reason = pickle_reason(path, head)
    if reason:
        report.add("refuse", rel, "pickle", f"{reason}; pickles run code when loaded: "
                   "convert the model to ONNX, TFLite or OpenVINO IR")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        scan_onnx(root, rel, report, policy)
    elif suffix == ".tflite" or head[4:8] == b"TFL3":
        scan_tflite(root, rel, report, policy)
    elif suffix == ".xml" and b"<net" in head:
        scan_ir(root, rel, report, policy)
