"""A CycloneDX 1.5 SBOM (JSON) for a model version: its files and what runs them.

Components: every file of the package (``machine-learning-model`` for a variant's
primary file, ``file`` for the rest: IR weights, external data, the manifest) with its
SHA-256, and the installed Python distributions that would load and serve it (the
backend runtimes for its formats, numpy, the appliance), with ``pkg:pypi`` purls. The
model itself is ``metadata.component``; its lineage parents are its pedigree, its
governance tags and weights fingerprints are properties.

:func:`package_sbom` builds one from a package directory at push time;
:func:`version_sbom` rebuilds one from a registry record (versions added with
``models add``, or pushed before SBOMs were stored).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..registry import Registry, VersionRecord
from ..registry.store import sha256_file
from ..registry.supply_chain import sbom_text, set_sbom

if TYPE_CHECKING:  # packages imports this module when push stores SBOMs
    from ..packages.manifest import Manifest

SPEC_VERSION = "1.5"
#: the distributions whose backends can load each format (only installed ones are listed)
FORMAT_LIBRARIES = {"onnx": ("onnxruntime", "onnxruntime-gpu", "openvino"),
                    "openvino": ("openvino",), "tflite": ("ai-edge-litert", "openvino")}
BASE_LIBRARIES = ("numpy", "appliance")


def _prop(name: str, value: object) -> dict[str, str]:
    return {"name": f"appliance:{name}", "value": str(value)}


def library_components(formats: Iterable[str]) -> list[dict[str, Any]]:
    """Installed distributions that run models of ``formats``, as library components."""
    names = [n for f in sorted(set(formats)) for n in FORMAT_LIBRARIES.get(f, ())]
    out: list[dict[str, Any]] = []
    for name in dict.fromkeys([*names, *BASE_LIBRARIES]):
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        purl = f"pkg:pypi/{name.lower().replace('_', '-')}@{version}"
        out.append({"type": "library", "bom-ref": purl, "name": name, "version": version,
                    "purl": purl})
    return out


def _file(ref: str, name: str, sha256: str, size: int, version: str, *, model: bool,
          props: list[dict[str, str]]) -> dict[str, Any]:
    return {"type": "machine-learning-model" if model else "file", "bom-ref": ref,
            "name": name, "version": version,
            "hashes": [{"alg": "SHA-256", "content": sha256}],
            "properties": [_prop("size", size), *props]}


def _document(name: str, version: str, manifest: Mapping[str, Any],
              files: list[dict[str, Any]], formats: Iterable[str],
              fingerprints: Mapping[str, str]) -> dict[str, Any]:
    model_ref = f"model:{name}@{version}"
    props = [_prop(f"tag:{k}", v) for k, v in (manifest.get("tags") or {}).items()
             if v is not None]
    props += [_prop(f"fingerprint:{p}", d) for p, d in sorted(fingerprints.items())]
    component: dict[str, Any] = {"type": "machine-learning-model", "bom-ref": model_ref,
                                 "name": name, "version": version}
    if manifest.get("description"):
        component["description"] = manifest["description"]
    parents = (manifest.get("lineage") or {}).get("parents") or []
    if parents:
        component["pedigree"] = {"ancestors": [
            {"type": "machine-learning-model", "name": p["model"], "version": p["version"],
             "properties": [_prop("relation", p["relation"])]} for p in parents]}
    if props:
        component["properties"] = props
    libraries = library_components(formats)
    tool = next((lib for lib in libraries if lib["name"] == "appliance"), None)
    return {
        "bomFormat": "CycloneDX", "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid4()}", "version": 1,
        "metadata": {
            "timestamp": datetime.now(UTC).isoformat(timespec="seconds"),
            "tools": {"components": [{"type": "application", "name": "appliance",
                                      "version": tool["version"] if tool else "unknown"}]},
            "component": component},
        "components": [*files, *libraries],
        "dependencies": [{"ref": model_ref,
                          "dependsOn": [c["bom-ref"] for c in [*files, *libraries]]}],
    }


def package_sbom(root: Path, manifest: Manifest | None = None, *, verified: bool = False,
                 fingerprints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The SBOM of the package directory ``root``.

    Files are hashed from disk unless ``verified`` says the manifest's sha256/size were
    just checked against them (as ``push_package`` does), which saves reading them again.
    ``fingerprints`` maps precision to weights fingerprint.
    """
    from ..packages.manifest import find_manifest, load_manifest

    mpath = find_manifest(root)
    manifest = manifest or load_manifest(mpath, require_hashes=False)
    primaries = {v.primary: v for v in manifest.variants}
    files: list[dict[str, Any]] = []
    seen: set[str] = set()
    for variant in manifest.variants:
        for entry in variant.files:
            if entry.path in seen:
                continue
            seen.add(entry.path)
            path = root / entry.path
            sha, size = ((entry.sha256, entry.size) if verified and entry.sha256
                         and entry.size is not None else (sha256_file(path), path.stat().st_size))
            owner = primaries.get(entry.path, variant)
            files.append(_file(f"file:{entry.path}", entry.path, sha, size, manifest.version,
                               model=entry.path in primaries,
                               props=[_prop("precision", owner.precision),
                                      _prop("format", owner.format)]))
    files.append(_file(f"file:{mpath.name}", mpath.name, sha256_file(mpath),
                       mpath.stat().st_size, manifest.version, model=False, props=[]))
    return _document(manifest.name, manifest.version, manifest.to_dict(), files,
                     [v.format for v in manifest.variants], fingerprints or {})


def version_sbom(record: VersionRecord,
                 fingerprints: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The SBOM of a registered version, from the registry's record of its files."""
    files = []
    for variant in record.all_variants():
        for f in variant.files:
            name = str(f["name"])
            files.append(_file(f"file:{variant.precision}/{name}", name, str(f["sha256"]),
                               int(f["size"]), record.version,
                               model=name == variant.primary_file,
                               props=[_prop("precision", variant.precision),
                                      _prop("format", variant.format)]))
    return _document(record.model, record.version, record.manifest, files,
                     [v.format for v in record.all_variants()], fingerprints or {})


def stored_sbom(registry: Registry, record: VersionRecord) -> dict[str, Any] | None:
    """The SBOM stored with the version at push time, if any (``versions.sbom``; a
    ``manifest["sbom"]`` kept by an older appliance is read too)."""
    text = sbom_text(registry.db, record.model, record.version)
    if text:
        sbom: dict[str, Any] = json.loads(text)
        return sbom
    found = record.manifest.get("sbom")
    return found if isinstance(found, dict) else None


def store_sbom(registry: Registry, model: str, version: str, doc: dict[str, Any]) -> None:
    """Keep ``doc`` with the version (what :func:`stored_sbom` reads)."""
    set_sbom(registry.db, model, version, doc)
