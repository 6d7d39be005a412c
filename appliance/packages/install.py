"""``appliance models push``: install a package into the registry, all or nothing.

Steps, in order (a failure at any step leaves no new registry rows; the extraction and
staging directories are removed on the way out):

1. extract the archive into ``artifacts/.staging/pkg-*`` (:func:`safe_extract`: plain
   tar only, the manifest read first, nothing beyond its declared sizes, a free-space
   reserve kept; a full disk is InsufficientStorage, 507);
2. load the manifest; if the version is already registered, return it when its package
   digest (sha256 of the manifest bytes) is the same, else Conflict naming both digests;
2b. verify ``model.sig`` when the package has one (:mod:`appliance.security.signing`):
   a signature from an untrusted key, or one that does not match, is refused; re-pushing
   an unsigned version's package with a valid signature attaches it;
3. check lineage parents are registered (NotFound otherwise);
4. verify every listed file's size and sha256, refuse unlisted files;
4b. security review (:mod:`appliance.security.scan`): pickles, paths or external data
   reaching outside the package, custom ops, oversized tensors are refused before any
   backend parses the files;
5. per variant: stage the files (copied, hashed, fsynced; encrypted while copied when
   the store encrypts), load them with the backend catalog (decrypting into memory), and
   compare the loaded signature with the manifest's (names and datatypes), then check
   every golden example against the manifest's and the loaded signature
   (:func:`appliance.probes.golden.check_golden`: names, datatypes, shapes, data);
6. move each staged variant to its content address (a rename; idempotent);
7. record the version, manifest and package digest in ONE SQLite transaction (the
   manifest record keeps the signature, ``signature``, and the manifest's exact bytes,
   ``source_manifest``, so an export can ship the package as it was signed).

A crash between 6 and 7 leaves content-addressed directories no row points at: they are
harmless, and the next push of the same package reuses them. Leftovers in
``.staging`` are removed at server start-up and before the next push
(``ArtifactStore.clean_staging``; a push in progress holds a lease that keeps its own).

Test hook: with ``APPLIANCE_TEST_CRASH_AT`` set to one of :data:`CRASH_STEPS` the process
SIGKILLs itself at that step (``before-commit`` is inside the transaction, just before
its ``COMMIT`` runs). Used by the crash tests only; unset, it does nothing.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
import sqlite3
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import BadRequest, Conflict, NotFound
from ..probes.golden import check_golden
from ..registry import Registry, VersionRecord
from ..registry.diskspace import check_free, mapping_disk_full
from ..registry.store import plain_facts
from ..runtime.catalog import BackendCatalog
from ..security.fingerprint import package_fingerprints, store_fingerprints
from ..security.sbom import package_sbom, store_sbom
from ..security.scan import ScanPolicy, raise_if_refused, scan_package
from ..security.signing import SIGNATURE_NAME, verify_package_signature
from ..signature import TensorSpec
from .archive import MAX_EXTRACT_BYTES, list_files, safe_extract
from .manifest import Manifest, TensorDecl, find_manifest, load_manifest
from .progress import SILENT, Progress
from .staging import StagedVariant, model_files, stage_variant

log = logging.getLogger(__name__)
CRASH_ENV = "APPLIANCE_TEST_CRASH_AT"
CRASH_STEPS = ("after-extract", "after-verify", "after-commit-files", "before-commit")


def _crash_point(step: str) -> None:
    if os.environ.get(CRASH_ENV) == step:
        os.kill(os.getpid(), signal.SIGKILL)


def _crash_on_commit(sql: str) -> None:
    if sql.strip().upper() == "COMMIT":
        os.kill(os.getpid(), signal.SIGKILL)


def signature_diff(kind: str, declared: list[TensorDecl], loaded: list[TensorSpec]) -> list[str]:
    """Differences in names and datatypes between the manifest and the loaded model."""
    want = {t.name: t.datatype for t in declared}
    have = {s.name: s.datatype for s in loaded}
    out = []
    for name in [*want, *(n for n in have if n not in want)]:
        if name not in have:
            out.append(f"{kind} `{name}` is in the manifest but not in the model")
        elif name not in want:
            out.append(f"{kind} `{name}` is in the model but not in the manifest")
        elif want[name] != have[name]:
            out.append(f"{kind} `{name}`: manifest says {want[name]}, model has {have[name]}")
    return out


def _existing(registry: Registry, manifest: Manifest, digest: str) -> VersionRecord | None:
    try:
        record = registry.version(manifest.name, manifest.version)
    except NotFound:
        return None
    if record.package_digest == digest:
        return record
    theirs = record.package_digest or "none (added with `models add`)"
    raise Conflict(f"model {manifest.name!r} version {manifest.version!r} is already "
                   f"registered with package digest {theirs}; this package has digest "
                   f"{digest}: a changed package needs a new version")


def _check_parents(registry: Registry, manifest: Manifest) -> None:
    for i, parent in enumerate(manifest.lineage.parents):
        try:
            registry.version(parent.model, parent.version)
        except NotFound as exc:
            raise NotFound(f"lineage.parents[{i}] ({parent.relation} {parent.model} version "
                           f"{parent.version}): {exc.message}; push the parent first") from None


def _verify_files(root: Path, manifest: Manifest, mname: str, progress: Progress) -> None:
    listed = {e.path: e for v in manifest.variants for e in v.files}
    on_disk = set(list_files(root))
    unlisted = sorted(on_disk - set(listed) - {mname, SIGNATURE_NAME})
    if unlisted:
        raise BadRequest(f"the package holds files not listed in {mname}: {', '.join(unlisted)}")
    missing = sorted(set(listed) - on_disk)
    if missing:
        raise BadRequest(f"{missing[0]} is listed in {mname} but missing from the package")
    progress.step("verifying", sum((root / p).stat().st_size for p in listed))
    for path, entry in listed.items():
        digest, size = plain_facts(root / path, progress.advance)
        if size != entry.size:
            raise BadRequest(f"{path}: size mismatch: {mname} says {entry.size} bytes, the "
                             f"file has {size} (the package is damaged or was changed)")
        if digest != entry.sha256:
            raise BadRequest(f"{path}: sha256 mismatch: {mname} says {entry.sha256}, the file "
                             f"has {digest} (the package is damaged or was changed)")


def _stage_declared(registry: Registry, catalog: BackendCatalog, root: Path,
                    manifest: Manifest, index: int, progress: Progress) -> StagedVariant:
    """Check variant ``index``'s declaration against its files, then stage and load it
    (:func:`~appliance.packages.staging.stage_variant`) and compare signatures."""
    decl = manifest.variants[index]
    where = f"variants[{index}] ({decl.precision})"
    fmt, needed = model_files(root / decl.primary, catalog.suffixes())
    if fmt != decl.format:
        raise BadRequest(f"{where}: format is {decl.format!r} but {decl.primary} is a {fmt!r} "
                         "model")
    paths = [e.path for e in decl.files]
    for path in needed:
        if path.relative_to(root).as_posix() not in paths:
            raise BadRequest(f"{where}: {decl.primary} needs {path.relative_to(root)}; list "
                             "it in this variant's files")
    names = [PurePosixPath(p).name for p in paths]
    if len(set(names)) != len(names):
        raise BadRequest(f"{where}: two files share a file name ({', '.join(paths)}): a "
                         "variant's files are stored side by side in one directory")
    staged = stage_variant(registry, catalog, precision=decl.precision, fmt=fmt,
                           primary=root / decl.primary, files=[root / p for p in paths],
                           expected=[(e.path, e.sha256) for e in decl.files],
                           progress=progress)
    diff = (signature_diff("input", manifest.inputs, staged.inputs)
            + signature_diff("output", manifest.outputs, staged.outputs))
    if diff:
        registry.store.discard(staged.staged)
        raise BadRequest(f"{where}: the manifest's signature does not match the model "
                         f"{decl.primary}: {'; '.join(diff)}")
    return staged


def _check_golden(manifest: Manifest, mname: str, inputs: list[TensorSpec],
                  outputs: list[TensorSpec], against: str) -> None:
    """Refuse golden examples a probe could never replay against this signature."""
    if not manifest.golden:
        return
    try:
        check_golden(manifest.to_dict()["golden"], inputs, outputs)
    except BadRequest as exc:
        raise BadRequest(f"{mname}: {exc.message} (checked against {against})") from None


def _manifest_record(manifest: Manifest, mname: str, mbytes: bytes,
                     signature: dict[str, str] | None) -> dict[str, Any]:
    """What ``versions.manifest`` keeps: the parsed manifest, plus the signature and the
    manifest's exact bytes (a signature signs bytes, not the parsed fields)."""
    data = manifest.to_dict()
    # a manifest that parsed is UTF-8 (TOML and JSON both require it)
    data["source_manifest"] = {"file": mname, "text": mbytes.decode("utf-8")}
    if signature is not None:
        data["signature"] = signature
    return data


def _attach_signature(registry: Registry, record: VersionRecord, manifest: Manifest,
                      mname: str, mbytes: bytes, signature: dict[str, str],
                      actor: str) -> VersionRecord:
    """Record a signature for a version pushed unsigned with the same manifest bytes."""
    data = {**record.manifest, **_manifest_record(manifest, mname, mbytes, signature)}
    return registry.set_manifest(record.model, record.version, data, actor=actor,
                                 action="sign",
                                 detail={k: signature[k] for k in ("key_id", "publisher")})


def _record(registry: Registry, pkg: Path, manifest: Manifest, digest: str, actor: str,
            committed: list[tuple[StagedVariant, str]],
            manifest_record: dict[str, Any]) -> VersionRecord:
    (main, main_digest), extra = committed[0], committed[1:]
    conn: sqlite3.Connection = registry.db.conn
    if os.environ.get(CRASH_ENV) == "before-commit":
        conn.set_trace_callback(_crash_on_commit)
    try:
        return registry.record_version(
            model=manifest.name, version=manifest.version, fmt=main.fmt,
            primary_file=main.primary_file, files=main.stored, digest=main_digest,
            inputs=main.inputs, outputs=main.outputs, created_by=actor,
            source=f"package:{pkg.resolve()}", precision=main.precision,
            variants=[s.as_variant(d) for s, d in extra],
            manifest=manifest_record, package_digest=digest)
    except Conflict:  # pushed concurrently: same package is fine, another one is not
        existing = _existing(registry, manifest, digest)
        if existing is None:
            raise
        return existing
    finally:
        conn.set_trace_callback(None)


def _security_review(root: Path, pkg: Path, policy: ScanPolicy | None) -> None:
    report = scan_package(root, policy=policy)
    for finding in report.of("warn"):
        log.warning("security scan of %s: %s: %s", pkg, finding.file, finding.message)
    raise_if_refused(report, str(pkg))


def push_package(registry: Registry, catalog: BackendCatalog, pkg: Path, *, actor: str,
                 max_bytes: int = MAX_EXTRACT_BYTES, reserve_bytes: int = 0,
                 scan_policy: ScanPolicy | None = None,
                 progress: Progress = SILENT) -> VersionRecord:
    """Install the package ``pkg`` (a ``.tar`` or a package directory) as one version.

    Pushing the same package again returns the existing record; a different package for
    the same name and version is a Conflict (409). ``scan_policy`` tunes the security
    review (default :class:`ScanPolicy`). ``max_bytes`` bounds the files extracted;
    a push that would leave less than ``reserve_bytes`` free on the data disk, or that
    fills it, is InsufficientStorage (507) and leaves nothing behind. Files stream
    through extraction, hashing, encryption and the store a chunk at a time, and a
    large ONNX variant is load-checked without its weights (:mod:`.weightless`): memory
    stays bounded whatever the package's size. ``progress`` is told each step and its
    bytes. Leftovers of pushes that died are removed first
    (:meth:`~appliance.registry.store.ArtifactStore.clean_staging`).
    """
    if not pkg.exists():
        raise BadRequest(f"{pkg} does not exist: give a package archive (.tar) built with "
                         "`appliance package build`, or a package directory")
    with mapping_disk_full(registry.data_dir):
        registry.store.clean_staging()
        return _push(registry, catalog, pkg, actor=actor, max_bytes=max_bytes,
                     reserve_bytes=reserve_bytes, scan_policy=scan_policy,
                     progress=progress)


def _push(registry: Registry, catalog: BackendCatalog, pkg: Path, *, actor: str,
          max_bytes: int, reserve_bytes: int, scan_policy: ScanPolicy | None,
          progress: Progress) -> VersionRecord:
    work = registry.store.staging_dir("pkg-")
    staged_dirs: list[Path] = []
    try:
        root = pkg
        if not pkg.is_dir():
            root = work / "package"
            root.mkdir()
            safe_extract(pkg, root, max_bytes=max_bytes, reserve_bytes=reserve_bytes,
                         progress=progress)
        _crash_point("after-extract")
        mpath = find_manifest(root)
        mbytes = mpath.read_bytes()
        manifest = load_manifest(mbytes, filename=mpath.name)
        digest = hashlib.sha256(mbytes).hexdigest()
        signature = verify_package_signature(root, mbytes, registry.keys.dir)
        existing = _existing(registry, manifest, digest)
        if existing is not None:
            if signature is not None and not existing.manifest.get("signature"):
                return _attach_signature(registry, existing, manifest, mpath.name, mbytes,
                                         signature, actor)
            return existing
        _check_parents(registry, manifest)
        _verify_files(root, manifest, mpath.name, progress)
        progress.step("scanning")
        _security_review(root, pkg, scan_policy)
        progress.step("fingerprinting")
        prints = package_fingerprints(root, manifest)
        sbom = package_sbom(root, manifest, verified=True,
                            fingerprints={p: f.digest for p, f in prints.items()})
        _crash_point("after-verify")
        # the staged (encrypted) copies need about as much again as the files
        check_free(registry.store.staging,
                   sum(int(e.size or 0) for v in manifest.variants for e in v.files),
                   reserve_bytes)
        variants: list[StagedVariant] = []
        for i in range(len(manifest.variants)):
            variants.append(_stage_declared(registry, catalog, root, manifest, i, progress))
            staged_dirs.append(variants[-1].staged)
            if i == 0:  # after the signature check: a wrong manifest is the first news
                _check_golden(manifest, mpath.name, [t.spec() for t in manifest.inputs],
                              [t.spec() for t in manifest.outputs], "the manifest's signature")
            _check_golden(manifest, mpath.name, variants[-1].inputs, variants[-1].outputs,
                          f"variants[{i}] as loaded")
        progress.step("recording")
        committed = [(s, registry.store.commit(s.staged, s.stored)[0]) for s in variants]
        _crash_point("after-commit-files")
        record = _record(registry, pkg, manifest, digest, actor, committed,
                         _manifest_record(manifest, mpath.name, mbytes, signature))
        # after the commit: a crash here leaves no SBOM or fingerprint for the version,
        # which `appliance fingerprint backfill` repairs
        store_sbom(registry, record.model, record.version, sbom)
        store_fingerprints(registry, record.model, record.version, prints)
        return record
    finally:
        for staged in staged_dirs:
            registry.store.discard(staged)
        registry.store.discard(work)
