"""Build a package archive byte for byte reproducibly, and extract one safely.

``build_package`` writes a plain (uncompressed) POSIX ustar archive whose bytes depend
only on the package's file names and contents: entries sorted by path, mtime 0, uid/gid
0, empty user/group names, mode 0644 for files and 0755 for directories, no pax headers.
The package directory holds the manifest and exactly the files it lists: an unlisted
file is refused (it would be shipped unverified), and so is a symlink or special file.
A missing ``sha256``/``size`` is computed and written into the archived manifest; a
wrong one is refused, naming the file.

A signed package (``appliance package sign``, :mod:`appliance.security.signing`) also
holds ``model.sig`` next to the manifest; it is archived as it is, after checking that it
signs these exact manifest bytes.
"""

from __future__ import annotations

import hashlib
import io
import os
import stat
import tarfile
import tempfile
from pathlib import Path
from typing import IO

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ..errors import BadRequest
from ..registry.diskspace import check_free, is_disk_full, mapping_disk_full
from ..registry.store import CHUNK, OnBytes, sha256_file
from ..security.signing import SIGNATURE_NAME, parse_signature, sign_manifest
from .manifest import MANIFEST_NAMES, dump_manifest, find_manifest, load_manifest
from .progress import SILENT, Progress

#: default limit on the total size of the files in an archive being extracted
MAX_EXTRACT_BYTES = 64 << 30
MAX_MEMBERS = 10_000


def list_files(root: Path) -> list[str]:
    """Every regular file under ``root`` as a relative POSIX path; refuse anything else."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            path = here / name
            rel = path.relative_to(root).as_posix()
            if path.is_symlink():
                raise BadRequest(f"{rel} is a symlink: a package holds regular files only")
            if path.is_dir():
                continue
            if not path.is_file():
                raise BadRequest(f"{rel} is not a regular file: a package holds regular "
                                 "files only")
            found.append(rel)
    return found


def _tarinfo(name: str, *, size: int = 0, directory: bool = False) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE if directory else tarfile.REGTYPE
    info.mode = 0o755 if directory else 0o644
    info.size = 0 if directory else size
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    return info


def complete_manifest(src_dir: Path, progress: Progress = SILENT
                      ) -> tuple[str, bytes, dict[str, int], bool]:
    """Check ``src_dir`` against its manifest: (manifest file name, the complete manifest
    bytes, size of each listed file, whether sha256/size had to be filled in). Files are
    hashed a chunk at a time (``progress``: the step "hashing")."""
    if not src_dir.is_dir():
        raise BadRequest(f"{src_dir} is not a directory: give the package directory "
                         "(the one holding model.toml)")
    manifest_path = find_manifest(src_dir)
    manifest = load_manifest(manifest_path, require_hashes=False)
    mname = manifest_path.name
    listed = {entry.path: entry for v in manifest.variants for entry in v.files}
    on_disk = set(list_files(src_dir))
    unlisted = sorted(set(on_disk) - set(listed) - {mname, SIGNATURE_NAME})
    if unlisted:
        raise BadRequest(f"{src_dir}: files not listed in {mname}: {', '.join(unlisted)}; "
                         "list them under a variant's files or remove them")
    filled = False
    sizes: dict[str, int] = {}
    progress.step("hashing", sum((src_dir / p).stat().st_size for p in listed
                                 if p in on_disk))
    for variant in manifest.variants:
        for entry in variant.files:
            path = src_dir / entry.path
            if entry.path not in on_disk:
                raise BadRequest(f"{entry.path} is listed in {mname} but is not in {src_dir}")
            digest, size = sha256_file(path, progress.advance), path.stat().st_size
            for field, actual in (("sha256", digest), ("size", size)):
                declared = getattr(entry, field)
                if declared is None:
                    setattr(entry, field, actual)
                    filled = True
                elif declared != actual:
                    raise BadRequest(f"{entry.path}: {mname} says {field} {declared} but the "
                                     f"file has {actual}; fix the manifest or remove the "
                                     f"{field} line to have it computed")
            sizes[entry.path] = size
    data = dump_manifest(manifest, mname) if filled else manifest_path.read_bytes()
    load_manifest(data, filename=mname)  # the archived manifest must be complete
    return mname, data, sizes, filled


def sign_package(src_dir: Path, private_key: Ed25519PrivateKey) -> tuple[Path, bool]:
    """Write ``src_dir/model.sig`` signing its complete manifest; return its path and
    whether the manifest file was rewritten with the sha256/size it lacked (a signature
    pins the hashes, so they must be in the manifest itself)."""
    mname, data, _, filled = complete_manifest(src_dir)
    if filled:
        _replace(src_dir / mname, data)
    _replace(src_dir / SIGNATURE_NAME, sign_manifest(data, private_key))
    return src_dir / SIGNATURE_NAME, filled


def _replace(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644)
    os.replace(tmp, path)


def _signature(src_dir: Path, mname: str, data: bytes, filled: bool) -> bytes | None:
    """``model.sig``'s bytes if the package is signed; BadRequest if it does not sign
    ``data`` (the manifest changed, or lacked hashes, after signing)."""
    path = src_dir / SIGNATURE_NAME
    if not path.exists():
        return None
    sig = path.read_bytes()
    doc = parse_signature(sig)
    if filled or doc["manifest_sha256"] != sha256_bytes(data):
        raise BadRequest(f"{SIGNATURE_NAME} does not sign this {mname} (it changed after "
                         f"signing, or lacks sha256/size): run `appliance package sign "
                         f"{src_dir} --key KEY.pem` again, or remove {SIGNATURE_NAME}")
    return sig


class _Counted:
    """A file read through, telling ``on_bytes`` what was read (a progress bar)."""

    def __init__(self, f: IO[bytes], on_bytes: OnBytes) -> None:
        self._f, self._on_bytes = f, on_bytes

    def read(self, n: int = -1) -> bytes:
        data = self._f.read(n)
        self._on_bytes(len(data))
        return data


def build_package(src_dir: Path, out: Path, *, progress: Progress = SILENT) -> str:
    """Check ``src_dir`` against its manifest and write the archive ``out``; return the
    archive's sha256. Building the same directory twice gives the same bytes. Files
    stream through hashing and archiving a chunk at a time, whatever their size;
    ``progress`` is told the steps (hashing, archiving, digest) and their bytes."""
    mname, data, sizes, filled = complete_manifest(src_dir, progress)
    sig = _signature(src_dir, mname, data, filled)
    extra = {mname: data, **({SIGNATURE_NAME: sig} if sig is not None else {})}
    dirs = {p.as_posix() for name in sizes for p in Path(name).parents if p != Path(".")}
    names = sorted([*sizes, *extra, *dirs])
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                tar.copybufsize = CHUNK  # type: ignore[attr-defined]
                progress.step("archiving", sum(sizes.values()))
                for name in names:
                    try:
                        if name in dirs:
                            tar.addfile(_tarinfo(name, directory=True))
                        elif name in extra:
                            tar.addfile(_tarinfo(name, size=len(extra[name])),
                                        io.BytesIO(extra[name]))
                        else:
                            with (src_dir / name).open("rb") as f:
                                tar.addfile(_tarinfo(name, size=sizes[name]),
                                            _Counted(f, progress.advance))
                    except ValueError as exc:  # e.g. a name too long for ustar
                        raise BadRequest(f"{name}: cannot be archived: {exc}") from None
            raw.flush()
            os.fsync(raw.fileno())
        progress.step("digest", tmp.stat().st_size)
        digest = sha256_file(tmp, progress.advance)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return digest


def _member_path(member: tarfile.TarInfo) -> str:
    """The member's normalized relative path; BadRequest if it could escape ``dest``."""
    name = member.name
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise BadRequest(f"archive member {name!r} has an absolute path")
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise BadRequest(f"archive member {name!r} has a '..' component")
    if member.issym() or member.islnk():
        raise BadRequest(f"archive member {name!r} is a link (to {member.linkname!r}): "
                         "packages hold regular files only")
    if not (member.isreg() or member.isdir()):
        raise BadRequest(f"archive member {name!r} is a device, FIFO or other special file")
    return "/".join(parts)


#: magic bytes of compressed files: packages are plain tar, never decompressed here
COMPRESSED_MAGIC = ((b"\x1f\x8b", "gzip"), (b"BZh", "bzip2"),
                    (b"\xfd7zXZ\x00", "xz"), (b"\x28\xb5\x2f\xfd", "zstd"),
                    (b"\x5d\x00\x00", "lzma"))
MAX_MANIFEST_BYTES = 1 << 20
MAX_SIGNATURE_BYTES = 64 << 10


def _refuse_compressed(tar_path: Path) -> None:
    try:
        with tar_path.open("rb") as f:
            head = f.read(6)
    except OSError as exc:
        raise BadRequest(f"{tar_path} cannot be read: {exc}") from None
    for magic, kind in COMPRESSED_MAGIC:
        if head.startswith(magic):
            raise BadRequest(f"{tar_path} is {kind}-compressed: a package is a plain, "
                             "uncompressed tar archive (what `appliance package build` "
                             "writes); decompress it first, or push the package directory")


def _headers(tar: tarfile.TarFile, tar_path: Path, max_bytes: int
             ) -> list[tuple[str, tarfile.TarInfo]]:
    """Every member's header checked, no data read: paths, types, sizes, total."""
    archive_size = tar_path.stat().st_size
    plan: list[tuple[str, tarfile.TarInfo]] = []
    seen: set[str] = set()
    total = 0
    while True:
        try:
            member = tar.next()
        except tarfile.TarError as exc:
            raise BadRequest(f"{tar_path}: damaged tar archive: {exc}") from None
        if member is None:
            return plan
        if len(plan) >= MAX_MEMBERS:
            raise BadRequest(f"{tar_path} has more than {MAX_MEMBERS} members")
        rel = _member_path(member)
        if member.issparse():
            raise BadRequest(f"archive member {member.name!r} is a sparse file: packages "
                             "hold regular files only")
        if member.isreg() and member.offset_data + member.size > archive_size:
            raise BadRequest(f"archive member {member.name!r} claims {member.size} bytes, "
                             "more than the archive holds (damaged or forged)")
        if not rel:
            continue
        if rel in seen:
            raise BadRequest(f"archive member {member.name!r} appears twice")
        seen.add(rel)
        total += member.size if member.isreg() else 0
        if total > max_bytes:
            raise BadRequest(f"archive member {member.name!r} takes the archive over the "
                             f"extraction limit of {max_bytes} bytes")
        plan.append((rel, member))


def _declared_sizes(tar: tarfile.TarFile, plan: list[tuple[str, tarfile.TarInfo]],
                    tar_path: Path) -> dict[str, int]:
    """Read and check the manifest first; the size each member may have."""
    found = [(rel, m) for rel, m in plan if rel in MANIFEST_NAMES and m.isreg()]
    if len(found) != 1:
        what = "both model.toml and model.json" if found else "no model.toml or model.json"
        raise BadRequest(f"{tar_path}: a package has exactly one manifest at its top; "
                         f"found {what}")
    mname, member = found[0]
    if member.size > MAX_MANIFEST_BYTES:
        raise BadRequest(f"{tar_path}: {mname} is {member.size} bytes; a manifest is at "
                         f"most {MAX_MANIFEST_BYTES}")
    src = tar.extractfile(member)
    assert src is not None  # a regular file always has a payload
    with src:
        manifest = load_manifest(src.read(), filename=mname)
    declared = {e.path: int(e.size or 0) for v in manifest.variants for e in v.files}
    allowed = {**declared, mname: member.size, SIGNATURE_NAME: MAX_SIGNATURE_BYTES}
    for rel, m in plan:
        if not m.isreg():
            continue
        if rel not in allowed:
            raise BadRequest(f"archive member {m.name!r} is not listed in {mname}: a package "
                             "holds its manifest and exactly the files it lists")
        if rel == SIGNATURE_NAME and m.size > MAX_SIGNATURE_BYTES:
            raise BadRequest(f"archive member {m.name!r} is {m.size} bytes; a signature is at "
                             f"most {MAX_SIGNATURE_BYTES}")
        if rel in declared and m.size != declared[rel]:
            raise BadRequest(f"archive member {m.name!r} is {m.size} bytes but {mname} "
                             f"declares {declared[rel]} (the package is damaged or changed)")
    return allowed


def _write(src: IO[bytes], target: Path, limit: int, name: str,
           on_bytes: OnBytes) -> None:
    written = 0
    with src, target.open("xb") as out:
        while chunk := src.read(CHUNK):
            written += len(chunk)
            if written > limit:  # never more than the header and the manifest declare
                raise BadRequest(f"archive member {name!r} holds more than the {limit} "
                                 "bytes declared")
            out.write(chunk)
            on_bytes(len(chunk))


def safe_extract(tar_path: Path, dest: Path, *, max_bytes: int = MAX_EXTRACT_BYTES,
                 reserve_bytes: int = 0, progress: Progress = SILENT) -> list[str]:
    """Extract the package archive ``tar_path`` into ``dest``; return the relative paths.

    Nothing is written until every check passed: a compressed archive is refused (a
    package is plain tar); every member header is checked (absolute paths, ``..``,
    links, devices, sparse files, duplicates, sizes beyond the archive, a total over
    ``max_bytes``); the manifest is read and parsed, and a member it does not list, or
    whose size differs from the declared one, is refused; and the files must fit on the
    disk leaving ``reserve_bytes`` free (507 otherwise). Refusals are BadRequests naming
    the member; a disk that fills up anyway is InsufficientStorage. Members are copied
    a chunk at a time (``progress``: the step "extracting").
    """
    _refuse_compressed(tar_path)
    try:
        tar = tarfile.open(tar_path, mode="r:")  # noqa: SIM115 - closed by the with below
    except (tarfile.TarError, OSError) as exc:
        raise BadRequest(f"{tar_path} is not a readable tar archive: {exc}") from None
    with tar:
        plan = _headers(tar, tar_path, max_bytes)
        allowed = _declared_sizes(tar, plan, tar_path)
        total = sum(m.size for _, m in plan if m.isreg())
        check_free(dest, total, reserve_bytes)
        progress.step("extracting", total)
        files = []
        with mapping_disk_full(dest, needed=total):
            for rel, member in plan:
                target = dest / rel
                try:
                    if member.isdir():
                        target.mkdir(parents=True, exist_ok=True)
                        continue
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None  # a regular file always has a payload
                    _write(src, target, min(member.size, allowed[rel]), member.name,
                           progress.advance)
                except (OSError, tarfile.TarError) as exc:
                    if is_disk_full(exc):
                        raise
                    raise BadRequest(f"archive member {member.name!r} cannot be extracted: "
                                     f"{exc}") from None
                files.append(rel)
    return files


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
