"""Random access to a model file's bytes in bounded pieces, without holding the file.

The import scan, the weights fingerprint and the weightless load check walk a model's
structure and hash its tensors' bytes where they lie. A :class:`ByteReader` gives them
``read`` (a few bytes at an offset, served from one cached block) and ``pieces`` (a range
streamed in blocks of at most :data:`BLOCK`), so memory stays a block or two whatever
the file's size. Reads go through ``os.pread``, not a memory map: pages of a map that
were touched count in the process's resident set until it is unmapped, a read's pages
only in the kernel's page cache.

:class:`FileReader` reads a plaintext file, :class:`BufferReader` bytes already in
memory; :class:`~appliance.security.crypto_reader.EncryptedReader` decrypts an
artifact encrypted at rest chunk by chunk behind the same interface.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

BLOCK = 1 << 20


class ByteReader(Protocol):
    """Bytes at offsets of one file; ``size`` is its length (of the plaintext)."""

    size: int

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset``, fewer only at the end of the file."""
        ...

    def pieces(self, offset: int, length: int) -> Iterator[bytes | memoryview]:
        """The range ``offset .. offset + length`` in pieces of at most :data:`BLOCK`."""
        ...

    def close(self) -> None:
        """Release the file (``contextlib.closing`` works on any reader)."""
        ...


def hash_range(h: Any, reader: ByteReader, offset: int, length: int) -> None:
    """Feed ``length`` bytes at ``offset`` to the hash ``h``; ValueError when the file
    ends first."""
    got = 0
    for piece in reader.pieces(offset, length):
        h.update(piece)
        got += len(piece)
    if got != length:
        raise ValueError(f"the range {offset}..{offset + length} is past the end of the "
                         f"file ({reader.size} bytes)")


def read_range(reader: ByteReader, offset: int, length: int) -> bytes:
    """The whole range ``offset .. offset + length`` as bytes (for small ranges, or where
    a parser needs the bytes in one piece); ValueError past the end of the file."""
    if offset < 0 or length < 0 or offset + length > reader.size:
        raise ValueError(f"the range {offset}..{offset + length} is past the end of the "
                         f"file ({reader.size} bytes)")
    return b"".join(bytes(p) for p in reader.pieces(offset, length))


class FileReader:
    """A plaintext file, read with ``pread``; one :data:`BLOCK` cached for ``read``.
    Close it (or use it as a context manager) to close the file."""

    def __init__(self, path: Path) -> None:
        self._fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self._fd).st_size
        self._at, self._block = 0, b""

    def read(self, offset: int, length: int) -> bytes:
        start = offset - self._at
        if start >= 0 and start + length <= len(self._block):
            return self._block[start:start + length]
        if length > BLOCK:
            return os.pread(self._fd, length, offset)
        self._at, self._block = offset, os.pread(self._fd, BLOCK, offset)
        return self._block[:length]

    def pieces(self, offset: int, length: int) -> Iterator[bytes]:
        end = min(offset + length, self.size)
        while offset < end:
            piece = os.pread(self._fd, min(BLOCK, end - offset), offset)
            if not piece:
                return
            offset += len(piece)
            yield piece

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> FileReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BufferReader:
    """Bytes already in memory (a decrypted file): slices, no copies for ``pieces``."""

    def __init__(self, data: bytes | bytearray | memoryview) -> None:
        self._view = memoryview(data).cast("B")
        self.size = len(self._view)

    def read(self, offset: int, length: int) -> bytes:
        return bytes(self._view[offset:offset + length])

    def pieces(self, offset: int, length: int) -> Iterator[memoryview]:
        end = min(offset + length, self.size)
        for at in range(offset, end, BLOCK):
            yield self._view[at:min(at + BLOCK, end)]

    def close(self) -> None:
        """Nothing to close; for symmetry with :class:`FileReader`."""

    def __enter__(self) -> BufferReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
