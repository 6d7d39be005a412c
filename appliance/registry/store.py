"""Content-addressed artifact store under ``<data_dir>/artifacts``.

A model version's files live together in ``artifacts/sha256/<digest>/`` (OpenVINO IR
needs its ``.xml`` and ``.bin`` side by side), where ``digest`` hashes the sorted
``name:sha256`` list of its files. Files are staged in ``artifacts/.staging``, hashed
while copied, fsynced, and the directory renamed into place in one step: a crash leaves
either no directory or a complete one, never half of one. Putting the same files again
is a no-op. Files are copied a :data:`CHUNK` at a time, whatever their size. Each staging
directory is leased to the process working in it (:meth:`ArtifactStore.staging_dir`), so
:meth:`ArtifactStore.clean_staging` removes what dead processes left and nothing else.

With encryption on (``encrypt_artifacts``, the default) every stored file is AES-256-GCM
encrypted under its own data key, wrapped by the box key (see
:mod:`appliance.security.crypto_store`): on :meth:`ArtifactStore.commit` at the latest, or
already while staging with ``stage(..., sealed=True)``, so no plaintext ever lands under
the data directory. Names and hashes stay those of the plaintext. Files stored before
encryption was turned on stay readable as they are.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..backend import ModelSource
from ..errors import InvalidModelFile
from ..security.crypto_store import (
    EncryptedModelSource,
    encrypt_file,
    is_encrypted,
    plain_sha256,
    read_header,
)
from ..security.keys import KeyStore

if TYPE_CHECKING:
    from ..security.scan.readers import ByteReader

CHUNK = 1 << 20
LOCK_SUFFIX = ".lock"


@dataclass(frozen=True)
class StoredFile:
    name: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


#: told how many bytes were just hashed or copied (a progress bar)
OnBytes = Callable[[int], None]


def sha256_file(path: Path, on_bytes: OnBytes | None = None) -> str:
    """The sha256 of the file ``path``, read a :data:`CHUNK` at a time."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return h.hexdigest()


def plain_facts(path: Path, on_bytes: OnBytes | None = None) -> tuple[str, int]:
    """The (sha256, size) of a file's plaintext: from the header of an encrypted file
    (no key needed), else by reading it."""
    if is_encrypted(path):
        with path.open("rb") as f:
            header = read_header(f, path.name)
        if on_bytes is not None:
            on_bytes(header.size)
        return header.sha256, header.size
    return sha256_file(path, on_bytes), path.stat().st_size


def set_digest(files: list[StoredFile]) -> str:
    """The digest naming a set of files: sha256 over sorted ``name:sha256`` lines."""
    lines = "".join(f"{f.name}:{f.sha256}\n" for f in sorted(files, key=lambda f: f.name))
    return hashlib.sha256(lines.encode()).hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _copy(src: Path, dst: Path, on_bytes: OnBytes | None = None) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` (fsynced); the sha256 and size of the bytes copied."""
    h, size = hashlib.sha256(), 0
    with src.open("rb") as fin, dst.open("wb") as fout:
        while chunk := fin.read(CHUNK):
            h.update(chunk)
            size += len(chunk)
            fout.write(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
        fout.flush()
        os.fsync(fout.fileno())
    return h.hexdigest(), size


class ArtifactStore:
    """The store of one data directory. ``keys`` holds the box key; ``encrypt`` says
    whether new files are encrypted (reading encrypted ones needs only ``keys``)."""

    def __init__(self, root: Path, keys: KeyStore | None = None, *, encrypt: bool = False,
                 box_key_provider: Callable[[], bytes | None] | None = None) -> None:
        self.root = root
        self.staging = root / ".staging"
        self.keys = keys
        self.encrypt = encrypt and keys is not None
        self._provider = box_key_provider
        self._leases: dict[Path, tuple[int, Path]] = {}

    def path_for(self, digest: str) -> Path:
        return self.root / "sha256" / digest

    def write_key(self) -> bytes:
        """The box key for encrypting (``keys/box.key`` is created on first use)."""
        assert self.keys is not None, "an encrypting store has a KeyStore"
        return self.keys.box_key()

    def read_key(self, path: Path) -> bytes:
        """The box key for decrypting ``path``. Never creates one: a data directory copied
        without its ``keys/`` would otherwise get a fresh key that opens nothing."""
        if self.keys is None:
            raise InvalidModelFile(f"{path.name} is encrypted, and this store has no keys")
        box_file = self.keys.dir / "box.key"
        if not box_file.exists() and (self._provider is None or self._provider() is None):
            raise InvalidModelFile(
                f"{path.name} is encrypted, but {box_file} does not exist and no plugin "
                "supplies the box key: this data directory was copied or restored without "
                "its keys/ directory. Restore keys/box.key (mode 0600) from the original "
                "box or its backup")
        return self.keys.box_key()

    def source(self, path: Path, fmt: str,
               expected: dict[str, str] | None = None) -> ModelSource:
        """A ModelSource for the stored primary file ``path``: decrypting into memory when
        it is encrypted. ``expected`` maps file names to their recorded sha256."""
        if is_encrypted(path):
            return EncryptedModelSource(path, fmt, self.read_key(path), dict(expected or {}))
        return ModelSource(path, fmt)

    def reader(self, path: Path, expected_sha256: str | None = None) -> ByteReader:
        """The plaintext of the stored or staged file ``path`` by range, in bounded
        memory: decrypted a chunk at a time when it is encrypted (close it after use)."""
        from ..security.crypto_reader import EncryptedReader
        from ..security.scan.readers import FileReader

        if is_encrypted(path):
            return EncryptedReader(path, self.read_key(path), expected_sha256=expected_sha256)
        return FileReader(path)

    def stage(self, sources: list[Path], *, sealed: bool = False,
              on_bytes: OnBytes | None = None) -> tuple[Path, list[StoredFile]]:
        """Copy ``sources`` into a fresh staging directory, hashing and fsyncing each.

        ``sealed=True`` encrypts while copying when the store encrypts (then load the
        staged files through :meth:`source`); a source that is already encrypted is
        copied as it is. Otherwise :meth:`commit` encrypts. ``on_bytes`` is told the
        bytes read as they are copied. Memory stays one chunk whatever the files' size.
        """
        tmp = self.staging_dir("stage-")
        stored = []
        try:
            for src in sources:
                dst = tmp / src.name
                if sealed and is_encrypted(src):
                    _copy(src, dst, on_bytes)
                    digest, size = plain_facts(dst)
                elif sealed and self.encrypt:
                    digest, size = encrypt_file(src, dst, self.write_key(), on_bytes=on_bytes)
                else:
                    digest, size = _copy(src, dst, on_bytes)
                stored.append(StoredFile(src.name, digest, size))
            _fsync_dir(tmp)
        except BaseException:
            self.discard(tmp)
            raise
        return tmp, stored

    def commit(self, staged: Path, files: list[StoredFile]) -> tuple[str, Path]:
        """Move a staged directory to its content address; return (digest, final path)."""
        digest = set_digest(files)
        final = self.path_for(digest)
        if final.exists():  # same content already stored: idempotent
            self.discard(staged)
            return digest, final
        if self.encrypt:
            self._encrypt_staged(staged, files)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged, final)
        _fsync_dir(final.parent)
        self._release(staged)
        return digest, final

    def _encrypt_staged(self, staged: Path, files: list[StoredFile]) -> None:
        """Replace each plaintext staged file by its encryption (the plaintext copy is
        unlinked; it only ever lived in ``.staging``)."""
        for f in files:
            path = staged / f.name
            if is_encrypted(path):
                continue
            tmp = staged / f".{f.name}.enc"
            tmp.unlink(missing_ok=True)
            digest, _ = encrypt_file(path, tmp, self.write_key())
            if digest != f.sha256:
                tmp.unlink(missing_ok=True)
                raise InvalidModelFile(f"{f.name} changed in staging before it was stored")
            os.replace(tmp, path)
        _fsync_dir(staged)

    def staging_dir(self, prefix: str) -> Path:
        """A fresh directory in ``.staging``, leased to this process until
        :meth:`discard` (or :meth:`commit`): :meth:`clean_staging` leaves it alone while
        the lease is held. The lease is an exclusive ``flock`` on ``<dir>.lock`` beside
        it, taken before the directory exists, so the kernel ends it when the process
        dies (a SIGKILL included) and the next clean-up removes what it left."""
        self.staging.mkdir(parents=True, exist_ok=True)
        while True:
            fd, lock = tempfile.mkstemp(prefix=prefix, suffix=LOCK_SUFFIX, dir=self.staging)
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:  # a clean-up between mkstemp and flock may have taken the fresh file
                if os.stat(lock).st_ino == os.fstat(fd).st_ino:
                    break
            except FileNotFoundError:
                pass
            os.close(fd)
        path = Path(lock[:-len(LOCK_SUFFIX)])
        try:
            path.mkdir()
        except BaseException:
            os.unlink(lock)
            os.close(fd)
            raise
        self._leases[path] = (fd, Path(lock))
        return path

    def _release(self, staged: Path) -> None:
        """End the lease on ``staged`` (its directory is gone: renamed or removed)."""
        lease = self._leases.pop(staged, None)
        if lease is not None:
            lease[1].unlink(missing_ok=True)
            os.close(lease[0])

    def discard(self, staged: Path) -> None:
        """Remove a staged directory, then its lease."""
        shutil.rmtree(staged, ignore_errors=True)
        self._release(staged)

    def verify(self, digest: str, files: list[dict[str, object]]) -> list[str]:
        """Names of files whose bytes no longer match their recorded sha256."""
        base = self.path_for(digest)
        return [str(f["name"]) for f in files
                if not (base / str(f["name"])).is_file()
                or self._stored_sha256(base / str(f["name"])) != f["sha256"]]

    def _stored_sha256(self, path: Path) -> str | None:
        if not is_encrypted(path):
            return sha256_file(path)
        try:  # decrypting authenticates every chunk; a damaged file counts as changed
            return plain_sha256(path, self.read_key(path))
        except InvalidModelFile:
            return None

    def clean_staging(self) -> None:
        """Remove leftovers of interrupted installs (at server start-up and before each
        push): every entry of ``.staging`` but those whose lease a live process holds
        (see :meth:`staging_dir`): it may be installing right now."""
        if not self.staging.exists():
            return
        for child in sorted(self.staging.iterdir(), key=lambda p: p.name.endswith(LOCK_SUFFIX)):
            if child.name.endswith(LOCK_SUFFIX):  # a lease whose directory is gone
                if not _held(child):
                    child.unlink(missing_ok=True)
                continue
            lock = child.with_name(child.name + LOCK_SUFFIX)
            if _held(lock):
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child, ignore_errors=True)
            else:
                child.unlink(missing_ok=True)
            lock.unlink(missing_ok=True)


def _held(lock: Path) -> bool:
    """Whether a live process holds the lease ``lock`` (False when it does not exist)."""
    try:
        fd = os.open(lock, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
