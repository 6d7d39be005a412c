"""Export a stored version for a named recipient, still encrypted; and decrypt an export.

An export is a plain ustar archive, streamed member by member:

- ``export.json``: format ``appliance-export-v1``, model, version, recipient name and key
  id, package digest, signature (if any), and every file's path, sha256 and size;
- the manifest (``model.toml``/``model.json``, byte for byte as pushed) and ``model.sig``
  when the version was pushed as a package: a decrypted export is then the original
  package directory, which ``appliance models push`` verifies again (signature included);
- each model file, encrypted: the stored ciphertext unchanged, behind a new header whose
  data key is sealed to the recipient's X25519 key instead of the box key (see
  :mod:`.crypto_store`). Versions added with ``models add`` use ``<precision>/<file>``.

The box key never leaves the box, and no plaintext is produced on the box: a file stored
before encryption was on is encrypted for the recipient as it is streamed.
:func:`decrypt_export` is the recipient's side (``appliance package decrypt``).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from ..errors import BadRequest, InvalidModelFile
from ..packages.archive import _member_path
from ..registry import Registry, VersionRecord
from ..registry.db import now, transaction
from ..registry.events import record_event
from .crypto_store import (
    is_encrypted,
    open_chunks,
    read_header,
    rewrap_for_recipient,
    seal_for_recipient,
)
from .keywrap import unwrap_with_private
from .signing import FORMAT as SIGNATURE_FORMAT
from .signing import SIGNATURE_NAME
from .trust import key_id, recipients

EXPORT_FORMAT = "appliance-export-v1"
EXPORT_JSON = "export.json"
_BLOCK = tarfile.BLOCKSIZE
_COPY = 1 << 20


@dataclass
class Member:
    """One archive member: its name, size and a function producing its bytes."""

    name: str
    size: int
    chunks: Callable[[], Iterator[bytes]]

    def tar_header(self) -> bytes:
        info = tarfile.TarInfo(self.name)
        info.size, info.mode, info.mtime = self.size, 0o644, 0
        try:
            return info.tobuf(format=tarfile.USTAR_FORMAT)
        except ValueError as exc:  # e.g. a path too long for ustar
            raise BadRequest(f"{self.name}: cannot be exported: {exc}") from None


@dataclass
class ExportPlan:
    filename: str
    members: list[Member]
    summary: dict[str, Any]

    def __post_init__(self) -> None:
        # built now, so a bad name fails the request instead of cutting the stream short
        self.headers = [m.tar_header() for m in self.members]

    @property
    def size(self) -> int:
        """The archive's exact size (for Content-Length)."""
        body = sum(_BLOCK + -(-m.size // _BLOCK) * _BLOCK for m in self.members)
        return -(-(body + 2 * _BLOCK) // tarfile.RECORDSIZE) * tarfile.RECORDSIZE

    def stream(self) -> Iterator[bytes]:
        """The archive's bytes, a chunk at a time (the ciphertext is read as it goes)."""
        written = 0
        for m, header in zip(self.members, self.headers):
            yield header
            sent = 0
            for chunk in m.chunks():
                sent += len(chunk)
                yield chunk
            if sent != m.size:  # never a ValueError: litestar reads that as end of stream
                raise OSError(f"export member {m.name} produced {sent} of {m.size} bytes")
            yield b"\0" * (-m.size % _BLOCK)
            written += _BLOCK + m.size + (-m.size % _BLOCK)
        yield b"\0" * (self.size - written)


def _bytes(data: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter([data])


def _ciphertext(path: Path, offset: int, length: int) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        with path.open("rb") as f:
            f.seek(offset)
            left = length
            while left > 0 and (chunk := f.read(min(_COPY, left))):
                left -= len(chunk)
                yield chunk
    return chunks


def _paths(record: VersionRecord) -> dict[tuple[str, str], str]:
    """(precision, stored name) -> path in the export: the manifest's paths for a pushed
    package, else ``<precision>/<name>``."""
    out = {(v.precision, str(f["name"])): f"{v.precision}/{f['name']}"
           for v in record.all_variants() for f in v.files}
    for decl in record.manifest.get("variants") or []:
        for entry in decl.get("files") or []:
            key = (decl.get("precision"), PurePosixPath(entry["path"]).name)
            if key in out:
                out[key] = entry["path"]
    return out


def plan_export(registry: Registry, record: VersionRecord, recipient: str, *,
                actor: str = "api") -> ExportPlan:
    """Everything the archive holds, with each file's data key re-wrapped for
    ``recipient`` (this reads the box key and checks every stored header); the export is
    recorded as an event."""
    target = recipients(registry.keys.dir).get(recipient)
    paths = _paths(record)
    members: list[Member] = []
    files: list[dict[str, Any]] = []
    for variant in record.all_variants():
        base = registry.store.path_for(variant.digest)
        for f in variant.files:
            path, name = base / str(f["name"]), paths[(variant.precision, str(f["name"]))]
            size, sha256 = int(f["size"]), str(f["sha256"])
            if is_encrypted(path):
                header, old = rewrap_for_recipient(path, registry.store.read_key(path),
                                                   target.key, target.key_id)
                if old.sha256 != sha256:
                    raise InvalidModelFile(f"{path.name} holds sha256 {old.sha256}, the "
                                           f"registry expects {sha256}: it was swapped")
                body = _ciphertext(path, old.body_offset, old.body_size)
                members.append(Member(name, len(header) + old.body_size,
                                      _chain(_bytes(header), body)))
            else:  # stored before encryption was on: encrypt as it streams
                members.append(_plain_member(path, name, size, sha256, target))
            files.append({"path": name, "sha256": sha256, "size": size,
                          "precision": variant.precision, "format": variant.format})
    source = record.manifest.get("source_manifest") or {}
    signature = record.manifest.get("signature") or None
    extra: list[Member] = []
    if source:
        extra.append(Member(source["file"], len(source["text"].encode()),
                            _bytes(source["text"].encode())))
        if signature:
            sig = _signature_file(signature, record.package_digest or "")
            extra.append(Member(SIGNATURE_NAME, len(sig), _bytes(sig)))
    summary = {"format": EXPORT_FORMAT, "model": record.model, "version": record.version,
               "recipient": target.name, "recipient_key_id": target.key_id,
               "exported_at": now(), "package_digest": record.package_digest,
               "manifest": source.get("file"),
               "signature": ({k: signature[k] for k in ("key_id", "publisher")}
                             if signature else None),
               "files": files}
    doc = (json.dumps(summary, indent=2) + "\n").encode()
    _record_event(registry, record, actor, summary)
    return ExportPlan(f"{record.model}-{record.version}.{target.name}.export.tar",
                      [Member(EXPORT_JSON, len(doc), _bytes(doc)), *extra,
                       *sorted(members, key=lambda m: m.name)], summary)


def _chain(*parts: Callable[[], Iterator[bytes]]) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        for part in parts:
            yield from part()
    return chunks


def _plain_member(path: Path, name: str, size: int, sha256: str, target: Any) -> Member:
    """A file stored before encryption was on: sealed for the recipient as it streams."""
    def chunks() -> Iterator[bytes]:
        with path.open("rb") as f:
            head, body = seal_for_recipient(f, size, sha256, target.key, target.key_id,
                                            path.name)
            yield head
            yield from body

    # the header's length depends only on the size and hash: measure it on a dry run
    header, _ = seal_for_recipient(io.BytesIO(), size, sha256, target.key, target.key_id,
                                   path.name)
    return Member(name, len(header) + read_header(io.BytesIO(header), name).body_size, chunks)


def _signature_file(signature: dict[str, str], manifest_sha256: str) -> bytes:
    doc = {"format": signature.get("format", SIGNATURE_FORMAT), "key_id": signature["key_id"],
           "manifest_sha256": manifest_sha256, "signature": signature["signature"]}
    return (json.dumps(doc, indent=2) + "\n").encode()


def _record_event(registry: Registry, record: VersionRecord, actor: str,
                  summary: dict[str, Any]) -> None:
    detail = {"recipient": summary["recipient"], "key_id": summary["recipient_key_id"]}
    with transaction(registry.db):
        record_event(registry.db, actor=actor, action="export", model=record.model,
                     version=record.version, detail=detail, at=summary["exported_at"])


# -- the recipient's side ----------------------------------------------------------------

def decrypt_export(tar_path: Path, private_key: X25519PrivateKey, out_dir: Path) -> dict[str, Any]:
    """Decrypt the export ``tar_path`` into ``out_dir`` (new or empty) with the
    recipient's private key; every file's sha256 is checked. Returns ``export.json``."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BadRequest(f"{out_dir} is not empty: give a new directory")
    created = not out_dir.exists()
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            summary = _read_summary(tar, tar_path, private_key)
            wanted = {f["path"]: f for f in summary["files"]}
            plain = {summary.get("manifest"), SIGNATURE_NAME} - {None}
            done: set[str] = set()
            for member in tar:
                rel = _member_path(member)
                if not member.isreg() or rel == EXPORT_JSON:
                    continue
                src = tar.extractfile(member)
                assert src is not None  # a regular member always has a payload
                target = out_dir / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if rel in plain:
                    with target.open("xb") as out:
                        shutil.copyfileobj(src, out)
                elif rel in wanted:
                    _decrypt_member(src, target, private_key, wanted[rel])
                    done.add(rel)
                else:
                    raise BadRequest(f"{tar_path}: member {rel!r} is not listed in {EXPORT_JSON}")
            missing = sorted(set(wanted) - done)
            if missing:
                raise BadRequest(f"{tar_path} lacks {', '.join(missing)} (truncated export?)")
    except (tarfile.TarError, OSError) as exc:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise BadRequest(f"{tar_path} is not a readable export: {exc}") from None
    except BaseException:
        if created:
            shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return summary


def _read_summary(tar: tarfile.TarFile, tar_path: Path,
                  private_key: X25519PrivateKey) -> dict[str, Any]:
    first = tar.next()
    src = tar.extractfile(first) if first is not None and first.name == EXPORT_JSON else None
    if src is None:
        raise BadRequest(f"{tar_path} is not an appliance export (no {EXPORT_JSON} first)")
    summary = json.loads(src.read())
    if summary.get("format") != EXPORT_FORMAT:
        raise BadRequest(f"{tar_path}: unknown export format {summary.get('format')!r}")
    mine = key_id(private_key.public_key())
    if summary.get("recipient_key_id") != mine:
        raise BadRequest(f"{tar_path} is for recipient {summary.get('recipient')!r} (key "
                         f"{summary.get('recipient_key_id')}), not for this key ({mine})")
    return dict(summary)


def _decrypt_member(src: IO[bytes], target: Path, private_key: X25519PrivateKey,
                    entry: dict[str, Any]) -> None:
    name = str(entry["path"])
    header = read_header(src, name)
    data_key = unwrap_with_private(header, private_key, name)
    h = hashlib.sha256()
    with target.open("xb") as out:
        for plain in open_chunks(src, header, data_key, name):
            h.update(plain)
            out.write(plain)
    if h.hexdigest() != entry["sha256"] or header.size != entry["size"]:
        raise BadRequest(f"{name}: decrypted content has sha256 {h.hexdigest()}, "
                         f"{EXPORT_JSON} says {entry['sha256']}")
