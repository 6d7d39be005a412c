"""Content-addressed artifact store under ``<data_dir>/artifacts``.

A model version's files live together in ``artifacts/sha256/<digest>/`` (OpenVINO IR
needs its ``.xml`` and ``.bin`` side by side), where ``digest`` hashes the sorted
``name:sha256`` list of its files. Files are staged in ``artifacts/.staging``, hashed
while copied, fsynced, and the directory renamed into place in one step: a crash leaves
either no directory or a complete one, never half of one. Putting the same files again
is a no-op.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

CHUNK = 1 << 20


@dataclass(frozen=True)
class StoredFile:
    name: str
    sha256: str
    size: int

    def to_dict(self) -> dict[str, object]:
        return {"name": self.name, "sha256": self.sha256, "size": self.size}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


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


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.staging = root / ".staging"

    def path_for(self, digest: str) -> Path:
        return self.root / "sha256" / digest

    def stage(self, sources: list[Path]) -> tuple[Path, list[StoredFile]]:
        """Copy ``sources`` into a fresh staging directory, hashing and fsyncing each."""
        self.staging.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="stage-", dir=self.staging))
        stored = []
        try:
            for src in sources:
                dst = tmp / src.name
                h, size = hashlib.sha256(), 0
                with src.open("rb") as fin, dst.open("wb") as fout:
                    while chunk := fin.read(CHUNK):
                        h.update(chunk)
                        size += len(chunk)
                        fout.write(chunk)
                    fout.flush()
                    os.fsync(fout.fileno())
                stored.append(StoredFile(src.name, h.hexdigest(), size))
            _fsync_dir(tmp)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return tmp, stored

    def commit(self, staged: Path, files: list[StoredFile]) -> tuple[str, Path]:
        """Move a staged directory to its content address; return (digest, final path)."""
        digest = set_digest(files)
        final = self.path_for(digest)
        if final.exists():  # same content already stored: idempotent
            shutil.rmtree(staged, ignore_errors=True)
            return digest, final
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staged, final)
        _fsync_dir(final.parent)
        return digest, final

    def discard(self, staged: Path) -> None:
        shutil.rmtree(staged, ignore_errors=True)

    def verify(self, digest: str, files: list[dict[str, object]]) -> list[str]:
        """Names of files whose bytes no longer match their recorded sha256."""
        base = self.path_for(digest)
        return [str(f["name"]) for f in files
                if not (base / str(f["name"])).is_file()
                or sha256_file(base / str(f["name"])) != f["sha256"]]

    def clean_staging(self) -> None:
        """Remove leftovers of interrupted installs (called at start-up)."""
        if self.staging.exists():
            for child in self.staging.iterdir():
                shutil.rmtree(child, ignore_errors=True)
