"""Random access to an artifact encrypted at rest, one chunk decrypted at a time.

The at-rest format (:mod:`appliance.security.crypto_store`) seals each 1 MiB chunk on
its own, its index and a final-chunk flag in the nonce: chunk ``i`` can be decrypted and
authenticated without the others, in its place and nowhere else. :class:`EncryptedReader`
uses that to serve :class:`~appliance.security.scan.readers.ByteReader` reads of the
plaintext (the weightless load check walks a staged, encrypted ONNX model this way)
holding one decrypted chunk. The file's length is checked against its header when it is
opened, so a truncated or extended file is refused before any read.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..errors import InvalidModelFile
from .crypto_store import TAG, _check_expected, _chunk_count, _nonce, read_header
from .keywrap import unwrap_with_box


class EncryptedReader:
    """The plaintext of the encrypted artifact ``path``, read by range; close it (or use
    it as a context manager) to close the file. ``expected_sha256`` is the hash the
    registry recorded: a file holding other (validly encrypted) content is refused."""

    def __init__(self, path: Path, box_key: bytes, *,
                 expected_sha256: str | None = None) -> None:
        self.name = path.name
        with path.open("rb") as f:
            header = read_header(f, path.name)
        _check_expected(header, expected_sha256, path.name)
        self._aead = AESGCM(unwrap_with_box(header, box_key, path.name))
        self._aad, self._chunk, self.size = header.chunk_aad(), header.chunk, header.size
        self._count = _chunk_count(header.size, header.chunk)
        self._body = header.body_offset
        self._fd = os.open(path, os.O_RDONLY)
        length = os.fstat(self._fd).st_size
        if length != header.body_offset + header.body_size:
            self.close()
            what = "truncated" if length < header.body_offset + header.body_size \
                else "longer than its header says (bytes after its last chunk)"
            raise InvalidModelFile(f"{path.name} is {what}: damaged or tampered with")
        self._index, self._plain = -1, b""

    def _load(self, i: int) -> bytes:
        if i != self._index:
            want = min(self._chunk, self.size - i * self._chunk) + TAG
            sealed = os.pread(self._fd, want, self._body + i * (self._chunk + TAG))
            if len(sealed) != want:
                raise InvalidModelFile(f"{self.name} is truncated: chunk {i} of "
                                       f"{self._count} is incomplete")
            try:
                plain = self._aead.decrypt(_nonce(i, i == self._count - 1), sealed,
                                           self._aad)
            except InvalidTag:
                raise InvalidModelFile(f"{self.name} is not decryptable: chunk {i} of "
                                       f"{self._count} fails authentication (the file is "
                                       "damaged or was tampered with)") from None
            self._index, self._plain = i, plain
        return self._plain

    def pieces(self, offset: int, length: int) -> Iterator[memoryview]:
        """The plaintext range ``offset .. offset + length`` in pieces of at most one
        chunk (each a view of the one decrypted chunk: use it before the next)."""
        end = min(offset + length, self.size)
        while offset < end:
            i, at = divmod(offset, self._chunk)
            plain = self._load(i)
            piece = memoryview(plain)[at:min(len(plain), at + end - offset)]
            offset += len(piece)
            yield piece

    def read(self, offset: int, length: int) -> bytes:
        """``length`` plaintext bytes at ``offset``, fewer only at the end."""
        return b"".join(bytes(p) for p in self.pieces(offset, length))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> EncryptedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
