"""Make the box run what its verified desired state says, through the lifecycle.

The desired state (``HubClient.desired``, written by ``appliance/hub/rollout.py``) maps
each model to ``{"version", "stage", "target", "sha256", "length", "package_sha256",
"key"}``: ``key`` is the package's data key wrapped to this box (:mod:`.unwrap`). For
each model, in name order:

- the version is registered here already: nothing is downloaded (its files are in the
  content-addressed store); only its stage moves, if it differs;
- else its target is missing: it is downloaded through the TUF client (length and hash
  verified against signed metadata) — every missing target first, before anything is
  installed, so a refused download (an attack) leaves the box exactly as it was;
- then each download is decrypted (:mod:`.unwrap`) and installed with the code of
  ``appliance models push`` (:func:`~appliance.packages.install.push_package`: manifest,
  publisher signature, file hashes, security scan, load check, one transaction), and
  promoted with :func:`~appliance.lifecycle.promotion.promote`: the same gates (signing
  policy, approvals, freeze windows, signature compatibility) and the same load-first
  switch as a local promotion, by actor ``hub-sync``.

A model whose install or promotion fails is reported (``failed``, with ``phase``
``install`` or ``activate``: the load, warm-up or a gate of the promotion) and keeps what
it served; the other models go on. A version marked ``failed`` here is not retried: the
hub assigns a fixed version instead. Models the desired state does not name are left
alone (they may be local).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from ..errors import ApplianceError, BadRequest, NotFound
from ..lifecycle.stages import STAGES
from ..registry.models import check_name
from .box import Box
from .unwrap import unwrap_package

__all__ = ["ACTOR", "ApplyResult", "Downloader", "apply_desired"]

ACTOR = "hub-sync"


class Downloader(Protocol):
    """What :func:`apply_desired` needs of the TUF client."""

    def download(self, target_path: str, dest_dir: Path) -> Path: ...


@dataclass
class ApplyResult:
    """What one application of a desired state did."""

    installed: list[dict[str, str]] = field(default_factory=list)
    promoted: list[dict[str, Any]] = field(default_factory=list)
    failed: list[dict[str, str]] = field(default_factory=list)
    unchanged: list[dict[str, str]] = field(default_factory=list)
    downloaded: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.installed or self.promoted or self.failed)

    def to_dict(self) -> dict[str, Any]:
        return {"installed": self.installed, "promoted": self.promoted,
                "failed": self.failed, "unchanged": self.unchanged,
                "downloaded": self.downloaded}


@dataclass(frozen=True)
class _Want:
    model: str
    version: str
    stage: str
    target: str
    package_sha256: str | None
    wrap: dict[str, Any] | None


def _wants(desired: dict[str, Any], result: ApplyResult) -> list[_Want]:
    """The desired entries that make sense; the others are failures, named."""
    out = []
    for model in sorted(desired):
        entry = desired[model]
        try:
            if not isinstance(entry, dict):
                raise BadRequest("the entry is not an object")
            check_name("model", model)
            version = check_name("version", str(entry["version"]))
            stage = str(entry.get("stage") or "registered")
            if stage not in STAGES or stage == "failed":
                raise BadRequest(f"unknown desired stage {stage!r}")
            wrap = entry.get("key", entry.get("wrap"))
            plain = entry.get("package_sha256")
            out.append(_Want(model, version, stage, str(entry.get("target") or ""),
                             str(plain) if plain else None,
                             dict(wrap) if isinstance(wrap, dict) else None))
        except (ApplianceError, KeyError) as exc:
            why = exc.message if isinstance(exc, ApplianceError) else f"no {exc}"
            result.failed.append({"model": str(model), "version": "",
                                  "reason": f"desired state entry refused: {why}"})
    return out


def _fail(result: ApplyResult, want: _Want, why: str, box: Box, phase: str) -> None:
    result.failed.append({"model": want.model, "version": want.version, "reason": why,
                          "phase": phase})
    box.progress(f"{want.model} {want.version}: failed: {why}")


def _install(box: Box, want: _Want, download: Path, private_key: Any) -> None:
    """Decrypt ``download`` and push it as a package (the ``models push`` code)."""
    from ..packages.install import push_package

    registry = box.registry
    limits = box.settings.lifecycle.packages
    work = registry.store.staging_dir("sync-")
    try:
        tar = unwrap_package(download, work / "package.tar", private_key, wrap=want.wrap,
                             expected_sha256=want.package_sha256)
        record = push_package(registry, box.catalog, tar, actor=ACTOR,
                              max_bytes=limits.max_extract_bytes,
                              reserve_bytes=limits.free_reserve_bytes)
    finally:
        registry.store.discard(work)
    if (record.model, record.version) != (want.model, want.version):
        raise BadRequest(f"the package of target {want.target} is {record.model} version "
                         f"{record.version}, not {want.model} version {want.version}")


def _promote(box: Box, want: _Want, result: ApplyResult) -> None:
    from ..lifecycle.promotion import promote

    record = box.registry.version(want.model, want.version)
    if record.stage == want.stage:
        return
    if record.stage == "failed":
        raise BadRequest(f"it failed here before ({record.failure_reason}); not retried: "
                         "assign a fixed version")
    box.progress(f"{want.model} {want.version}: promoting {record.stage} -> {want.stage}")
    summary = promote(box.registry, box.settings, want.model, want.version, want.stage,
                      actor=ACTOR, reason="desired state from the hub", loader=box.loader)
    result.promoted.append({"model": want.model, "version": want.version,
                            "from": summary["from"], "to": want.stage,
                            "demoted": summary.get("demoted")})


def _registered(box: Box, want: _Want) -> bool:
    try:
        box.registry.version(want.model, want.version)
    except NotFound:
        return False
    return True


def apply_desired(box: Box, client: Downloader, desired: dict[str, Any], downloads: Path,
                  private_key: Any, *, cache_dir: Path | None = None) -> ApplyResult:
    """Apply ``desired`` to ``box`` (module docstring). A refused download raises (the
    TUF client's ``SyncRefused``) before anything is installed; ``downloads`` holds the
    verified downloads until they are installed. ``cache_dir`` is the TUF client's
    target cache: a package's cached copy is removed once it is installed (the store
    has it; a package that failed to install stays cached, so it is not fetched again)."""
    result = ApplyResult()
    wants = _wants(desired, result)
    missing = [w for w in wants if not _registered(box, w)]
    fetched: dict[str, Path] = {}
    downloads.mkdir(parents=True, exist_ok=True)
    for want in missing:  # all first: a refusal here changes nothing on the box
        if not want.target:
            continue
        box.progress(f"{want.model} {want.version}: downloading {want.target}")
        fetched[want.model] = client.download(want.target, downloads)
        result.downloaded += 1
    for want in wants:
        phase = "install"
        try:
            if want in missing:
                if want.model not in fetched:
                    raise BadRequest("the desired state names no target to download")
                box.progress(f"{want.model} {want.version}: installing")
                _install(box, want, fetched[want.model], private_key)
                result.installed.append({"model": want.model, "version": want.version})
                if cache_dir is not None:  # HubClient names its copies so
                    (cache_dir / quote(want.target, "")).unlink(missing_ok=True)
            before = len(result.promoted)
            phase = "activate"
            _promote(box, want, result)
            if len(result.promoted) == before and want not in missing:
                result.unchanged.append({"model": want.model, "version": want.version,
                                         "stage": want.stage})
        except ApplianceError as exc:
            _fail(result, want, exc.message, box, phase)
        finally:
            if want.model in fetched:
                with contextlib.suppress(OSError):
                    fetched[want.model].unlink()
    if result.changed and box.on_change is not None:
        box.on_change()
    return result
