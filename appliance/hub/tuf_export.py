"""Air-gapped bundles: the part of the hub's repository some boxes need, on a USB stick.

A bundle has the repository's own layout (``metadata/``, ``targets/``), so a box verifies
it with the very same ``tuf.ngclient.Updater`` through ``appliance.sync.directory_fetcher``
and continues online from it later. It holds every root version (a box that trusts an
old root walks the chain), the current timestamp, snapshot, top-level targets and all
bins, each device's ``desired.json`` and the package targets the desired states name.

A desired state names a package when it contains a target path itself, or when a model
name is a key whose value mentions a version: ``{"models": {"resnet": {"version": "3"}}}``
or ``{"resnet": {"3": "production"}}`` name every ``packages/resnet/3/…`` target.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tuf.api.metadata import Root, Snapshot, TargetFile, Targets, Timestamp

from appliance.errors import NotFound
from appliance.hub.tuf_files import atomic_copy
from appliance.hub.tuf_layout import PACKAGES_PREFIX, RepoLayout, RepoState, desired_path


def export_bundle(state: RepoState, out_dir: Path, device_ids: Iterable[str]) -> dict[str, Any]:
    """Copy ``state``'s metadata, and the desired states and packages of ``device_ids``,
    into ``out_dir`` (created if missing; files already there are replaced). NotFound if a
    device has no desired state. Returns {"devices", "metadata", "targets", "bytes"}."""
    src, out = state.layout, RepoLayout(out_dir)
    metadata = [src.metadata_file(Root.type, v) for v in src.root_versions()]
    metadata += [src.metadata_file(Root.type), src.metadata_file(Timestamp.type)]
    metadata.append(src.metadata_file(Snapshot.type, state.snapshot.signed.version))
    metadata.append(src.metadata_file(Targets.type, state.targets.signed.version))
    metadata += [
        src.metadata_file(name, state.snapshot.signed.meta[f"{name}.json"].version)
        for name in state.bin_names()
    ]
    wanted: dict[str, TargetFile] = {}
    devices = list(dict.fromkeys(device_ids))
    for device_id in devices:
        info = state.find_target(desired_path(device_id))
        if info is None:
            raise NotFound(
                f"device {device_id!r} has no desired state on the hub: set one "
                "(HubRepository.set_desired) before exporting a bundle for it"
            )
        wanted[info.path] = info
        desired = json.loads(src.target_file(info).read_bytes())
        for named in named_targets(desired, state.targets.signed.targets):
            wanted[named] = state.targets.signed.targets[named]
    total = 0
    for path in metadata:
        total += atomic_copy(path, out.metadata_dir / path.name)[0]
    for info in wanted.values():
        total += atomic_copy(src.target_file(info), out.target_file(info))[0]
    return {
        "devices": devices,
        "metadata": [p.name for p in metadata],
        "targets": sorted(wanted),
        "bytes": total,
    }


def named_targets(desired: Any, targets: Mapping[str, TargetFile]) -> list[str]:
    """The top-level target paths a desired-state document names (see the module doc)."""
    strings: set[str] = set()
    under_key: dict[str, set[str]] = {}
    _walk(desired, strings, under_key)
    found = []
    for path in targets:
        if path in strings:
            found.append(path)
            continue
        parts = path.split("/")
        if path.startswith(PACKAGES_PREFIX) and len(parts) >= 4:
            model, version = parts[1], parts[2]
            if version in under_key.get(model, ()):
                found.append(path)
    return sorted(found)


def _walk(value: Any, strings: set[str], under_key: dict[str, set[str]]) -> set[str]:
    """Collect every string (keys, values, numbers as text) in ``value``; record for each
    mapping key the strings of its subtree. Returns the strings of ``value``."""
    mine: set[str] = set()
    if isinstance(value, Mapping):
        for key, item in value.items():
            below = _walk(item, strings, under_key)
            under_key.setdefault(str(key), set()).update(below)
            mine.add(str(key))
            mine |= below
    elif isinstance(value, list):
        for item in value:
            mine |= _walk(item, strings, under_key)
    elif isinstance(value, str | int | float) and not isinstance(value, bool):
        mine.add(str(value))
    strings |= mine
    return mine
