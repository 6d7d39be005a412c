"""Where the hub's TUF repository keeps its files, and reading its current state.

The repository is a folder of static files a web server or CDN serves as is::

    repo/metadata/1.root.json … N.root.json, root.json (a copy of the newest)
    repo/metadata/timestamp.json                     (the only file rewritten in place)
    repo/metadata/<v>.snapshot.json, <v>.targets.json, <v>.devices-<hex>.json
    repo/targets/<dir>/<sha256>.<basename>           (consistent-snapshot target names)

Target paths name packages ``packages/<model>/<version>/<file>`` (top-level targets,
signed by the offline targets key) and desired states ``devices/<id>/desired.json``
(in the hash bin the path falls into, signed by the online key). Versioned files are never
rewritten, so a client mid-update always finds the consistent set it started with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib import parse

from tuf.api.metadata import Metadata, Root, Snapshot, TargetFile, Targets, Timestamp

from appliance.errors import BadRequest, ConfigError, Conflict
from appliance.hub.tuf_files import atomic_copy, atomic_write, file_digest

BIN_PREFIX = "devices"
PACKAGES_PREFIX = "packages/"
DEVICES_PREFIX = "devices/"

_SEGMENT = re.compile(r"[A-Za-z0-9_@+=-][A-Za-z0-9._@+=-]{0,199}")
_DEVICE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def check_target_path(path: str) -> str:
    """``path`` if it is a safe relative target path (segments of letters, digits and
    ``._@+=-``, none empty or starting with a dot); BadRequest saying why otherwise."""
    segments = path.split("/")
    if len(path) > 1000 or len(segments) < 2 or not all(_SEGMENT.fullmatch(s) for s in segments):
        raise BadRequest(
            f"target path {path!r} is not valid: use 'dir/…/file' with segments of letters, "
            "digits and '._@+=-' that do not start with a dot, e.g. "
            "'packages/<model>/<version>/model.onnx'"
        )
    return path


def desired_path(device_id: str) -> str:
    """The target path of a device's desired state, ``devices/<device_id>/desired.json``;
    BadRequest if the id is not 1–128 of letters, digits and ``._-`` (first alphanumeric)."""
    if not _DEVICE_ID.fullmatch(device_id):
        raise BadRequest(
            f"device id {device_id!r} is not valid: use 1-128 letters, digits, '.', '_' or "
            "'-', starting with a letter or digit"
        )
    return f"{DEVICES_PREFIX}{device_id}/desired.json"


def store_target(layout: RepoLayout, target_path: str, data: bytes | Path) -> tuple[int, str]:
    """Write a target's bytes (streamed from a file, or given) under its consistent-
    snapshot name in ``layout``; returns (length, sha256 hex)."""
    if isinstance(data, Path):
        length, sha256 = file_digest(data)
    else:
        info = TargetFile.from_data(target_path, data, ["sha256"])
        length, sha256 = info.length, info.hashes["sha256"]
    dest = layout.target_file(TargetFile(length, {"sha256": sha256}, target_path))
    if dest.is_file() and dest.stat().st_size == length:
        return length, sha256  # content-addressed: same name, same bytes
    if isinstance(data, Path):
        if atomic_copy(data, dest) != (length, sha256):
            dest.unlink(missing_ok=True)
            raise Conflict(f"{data} changed while it was being added; add it again")
    else:
        atomic_write(dest, data)
    return length, sha256


class RepoLayout:
    """Paths inside ``repo_dir`` and typed reads of its metadata files."""

    def __init__(self, repo_dir: Path) -> None:
        self.repo_dir = Path(repo_dir)
        self.metadata_dir = self.repo_dir / "metadata"
        self.targets_dir = self.repo_dir / "targets"

    def metadata_file(self, role: str, version: int | None = None) -> Path:
        """``<version>.<role>.json`` (or ``<role>.json`` without a version), the role name
        URL-quoted the way ``tuf.ngclient`` asks for it."""
        name = parse.quote(role, "")
        return self.metadata_dir / (f"{name}.json" if version is None else f"{version}.{name}.json")

    def target_file(self, info: TargetFile) -> Path:
        """Where a target's bytes live: ``<dir>/<sha256>.<basename>`` under targets/."""
        dirname, _, basename = info.path.rpartition("/")
        return self.targets_dir / dirname / f"{info.hashes['sha256']}.{basename}"

    def root_versions(self) -> list[int]:
        """Every root version published, ascending."""
        versions = []
        for path in self.metadata_dir.glob("*.root.json"):
            head = path.name.split(".", 1)[0]
            if head.isdigit():
                versions.append(int(head))
        return sorted(versions)

    def read(self) -> RepoState:
        """The current repository state, from timestamp.json down; ConfigError when the
        folder holds no repository or a file the timestamp chain names is missing."""
        try:
            root = Metadata[Root].from_file(str(self.metadata_file(Root.type)))
            timestamp = Metadata[Timestamp].from_file(str(self.metadata_file(Timestamp.type)))
            snap_version = timestamp.signed.snapshot_meta.version
            snapshot = Metadata[Snapshot].from_file(
                str(self.metadata_file(Snapshot.type, snap_version))
            )
            targets_version = snapshot.signed.meta[f"{Targets.type}.json"].version
            targets = Metadata[Targets].from_file(
                str(self.metadata_file(Targets.type, targets_version))
            )
        except FileNotFoundError as exc:
            raise ConfigError(
                f"{self.repo_dir} is not a complete TUF repository ({exc.filename} is "
                "missing): create one with HubRepository.create, or restore the folder "
                "from a backup"
            ) from exc
        return RepoState(self, root, timestamp, snapshot, targets)


@dataclass
class RepoState:
    """The current metadata of a repository; bins load on first use."""

    layout: RepoLayout
    root: Metadata[Root]
    timestamp: Metadata[Timestamp]
    snapshot: Metadata[Snapshot]
    targets: Metadata[Targets]
    bins: dict[str, Metadata[Targets]] = field(default_factory=dict)

    def bin_names(self) -> list[str]:
        """Every hash-bin role the top-level targets delegate to."""
        delegations = self.targets.signed.delegations
        if delegations is None or delegations.succinct_roles is None:
            return []
        return list(delegations.succinct_roles.get_roles())

    def bin_for(self, target_path: str) -> str:
        """The hash-bin role responsible for ``target_path``."""
        delegations = self.targets.signed.delegations
        if delegations is None or delegations.succinct_roles is None:
            raise ConfigError(
                f"{self.layout.repo_dir}: top-level targets delegate to no hash bins; the "
                "repository was not made by HubRepository.create"
            )
        return delegations.succinct_roles.get_role_for_target(target_path)

    def bin(self, name: str) -> Metadata[Targets]:
        """The current metadata of bin ``name`` (loaded once, then kept)."""
        if name not in self.bins:
            version = self.snapshot.signed.meta[f"{name}.json"].version
            path = self.layout.metadata_file(name, version)
            self.bins[name] = Metadata[Targets].from_file(str(path))
        return self.bins[name]

    def find_target(self, target_path: str) -> TargetFile | None:
        """The target at ``target_path`` as a box would resolve it: top-level targets
        first, then the bin the path hashes to."""
        found = self.targets.signed.targets.get(target_path)
        if found is not None or not self.bin_names():
            return found
        return self.bin(self.bin_for(target_path)).signed.targets.get(target_path)
