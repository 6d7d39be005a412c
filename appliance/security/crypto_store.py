"""Artifacts encrypted at rest: one random AES-256 data key per file, wrapped by the box key.

A stored file is self-describing::

    b"APLENC1\\n"          8 bytes, the magic
    header length         4 bytes, big-endian
    header                UTF-8 JSON, padded with spaces: {"content": {...}, "wrap": {...}}
    chunk 0 .. n-1        AES-256-GCM ciphertext of each plaintext chunk, 16-byte tag each

``content`` = ``{"cipher", "chunk", "size", "sha256"}`` describes the plaintext (its sha256
is what the registry and manifests record, so hashes verify without the key). ``wrap``
holds the data key encrypted under a key-encryption key: the box key (``A256GCM``), or,
in an export, a recipient's X25519 public key (``X25519-HKDF-SHA256-A256GCM``). Re-wrapping
for a recipient replaces the header only; the ciphertext is copied as is.

Why chunked rather than one GCM message: models pass 2 GiB and GCM decrypts a message
only as a whole, so one message would need the whole file in memory twice. Chunks are
1 MiB; chunk ``i``'s nonce is ``i`` (11 bytes) plus a final-chunk flag byte (the STREAM
construction), so chunks cannot be reordered, dropped or the file truncated without
failing authentication. A fresh data key per file keeps those counter nonces unique.
Every chunk authenticates ``cipher``/``chunk``/``size``; the key wrap authenticates the
whole ``content``, sha256 included (the hash is only known once the last chunk is
written, when the wrap is computed and the header filled in).

Plaintext exists only in memory: :func:`decrypt_to_memory` and
:class:`EncryptedModelSource` never write it anywhere.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ..backend import ModelSource
from ..errors import InvalidModelFile
from .keywrap import unwrap_with_box, wrap_for_box, wrap_for_recipient

MAGIC = b"APLENC1\n"
CIPHER = "AES-256-GCM-STREAM"
CHUNK = 1 << 20
TAG = 16
#: room reserved for the header, so it can be filled in after the body is written
HEADER_SPACE = 1024
MAX_HEADER = 64 << 10


@dataclass(frozen=True)
class Header:
    """A parsed header; ``body_offset`` is where the first chunk starts."""

    content: dict[str, Any]
    wrap: dict[str, Any]
    body_offset: int

    @property
    def size(self) -> int:
        return int(self.content["size"])

    @property
    def sha256(self) -> str:
        return str(self.content["sha256"])

    @property
    def chunk(self) -> int:
        return int(self.content["chunk"])

    @property
    def body_size(self) -> int:
        return self.size + TAG * _chunk_count(self.size, self.chunk)

    def chunk_aad(self) -> bytes:
        fixed = {k: self.content[k] for k in ("cipher", "chunk", "size")}
        return MAGIC + json.dumps(fixed, sort_keys=True, separators=(",", ":")).encode()

    def wrap_aad(self, alg: str) -> bytes:
        whole = json.dumps(self.content, sort_keys=True, separators=(",", ":")).encode()
        return MAGIC + alg.encode() + b"\0" + whole


def _chunk_count(size: int, chunk: int) -> int:
    return max(1, -(-size // chunk))  # an empty file is one empty, final chunk


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def encode_header(header: Header, space: int = 0) -> bytes:
    """Magic, length and JSON of ``header``, padded with spaces to ``space`` bytes."""
    body = json.dumps({"content": header.content, "wrap": header.wrap},
                      sort_keys=True).encode()
    body += b" " * max(0, space - 12 - len(body))
    return MAGIC + len(body).to_bytes(4, "big") + body


def is_encrypted(path: Path) -> bool:
    """Whether ``path`` starts with the magic of an encrypted artifact."""
    try:
        with path.open("rb") as f:
            return f.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def read_header(f: IO[bytes], name: str) -> Header:
    """Parse the header at the start of ``f``; InvalidModelFile naming ``name`` if bad."""
    head = f.read(12)
    if len(head) < 12 or head[:8] != MAGIC:
        raise InvalidModelFile(f"{name} is not an encrypted artifact (no {MAGIC!r} header): "
                               "the file is damaged or was replaced")
    length = int.from_bytes(head[8:], "big")
    raw = f.read(length) if length <= MAX_HEADER else b""
    try:
        doc = json.loads(raw)
        content, wrap = dict(doc["content"]), dict(doc["wrap"])
        if content["cipher"] != CIPHER or int(content["chunk"]) <= 0:
            raise ValueError(f"unknown cipher {content['cipher']!r}")
        int(content["size"]), bytes.fromhex(str(content["sha256"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidModelFile(f"{name}: damaged encryption header ({exc}); the file "
                               "cannot be decrypted") from None
    return Header(content, wrap, 12 + length)


# -- encrypting ------------------------------------------------------------------------

def _seal_chunks(read: Callable[[int], bytes], header: Header, data_key: bytes,
                 hasher: Any, name: str,
                 on_bytes: Callable[[int], None] | None = None) -> Iterator[bytes]:
    """Encrypt ``header.size`` bytes from ``read`` chunk by chunk, hashing the plaintext."""
    aead, aad = AESGCM(data_key), header.chunk_aad()
    count, chunk = _chunk_count(header.size, header.chunk), header.chunk
    for i in range(count):
        want = min(chunk, header.size - i * chunk)
        data = read(want)
        if len(data) != want:
            raise InvalidModelFile(f"{name} ended after {i * chunk + len(data)} of "
                                   f"{header.size} bytes while it was being encrypted")
        hasher.update(data)
        if on_bytes is not None:
            on_bytes(len(data))
        yield aead.encrypt(_nonce(i, i == count - 1), data, aad)


def encrypt_stream(src: IO[bytes], size: int, dst_path: Path, box_key: bytes, *,
                   name: str = "",
                   on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Encrypt ``size`` bytes read from ``src`` into a new file ``dst_path`` (fsynced);
    return the plaintext's (sha256, size). Memory use is one chunk; ``on_bytes`` is told
    each chunk's plaintext length as it is sealed."""
    name = name or dst_path.name
    data_key = AESGCM.generate_key(256)
    header = Header({"cipher": CIPHER, "chunk": CHUNK, "size": size, "sha256": "0" * 64},
                    {}, 0)
    hasher = hashlib.sha256()
    with dst_path.open("xb") as out:
        out.write(b"\0" * HEADER_SPACE)  # filled in below, once the hash is known
        for sealed in _seal_chunks(src.read, header, data_key, hasher, name, on_bytes):
            out.write(sealed)
        if src.read(1):
            raise InvalidModelFile(f"{name} grew while it was being encrypted")
        content = {**header.content, "sha256": hasher.hexdigest()}
        final = Header(content, {}, 0)
        final = Header(content, wrap_for_box(final, data_key, box_key), 0)
        encoded = encode_header(final, HEADER_SPACE)
        if len(encoded) != HEADER_SPACE:  # cannot happen with a box wrap (~300 bytes)
            raise InvalidModelFile(f"{name}: encryption header outgrew its reserved space")
        out.seek(0)
        out.write(encoded)
        out.flush()
        os.fsync(out.fileno())
    return hasher.hexdigest(), size


def encrypt_file(src_plain_path: Path, dst_path: Path, box_key: bytes, *,
                 on_bytes: Callable[[int], None] | None = None) -> tuple[str, int]:
    """Encrypt the file ``src_plain_path`` into ``dst_path``; return (sha256, size) of the
    plaintext. Streams: any size, one chunk in memory."""
    with src_plain_path.open("rb") as src:
        size = os.fstat(src.fileno()).st_size
        return encrypt_stream(src, size, dst_path, box_key, name=src_plain_path.name,
                              on_bytes=on_bytes)


def seal_for_recipient(src: IO[bytes], size: int, sha256: str, recipient: X25519PublicKey,
                       recipient_id: str, name: str) -> tuple[bytes, Iterator[bytes]]:
    """Encrypt a plaintext stream straight to a recipient (an export of an unencrypted
    store): the header bytes, and the chunks as they are read. ``sha256`` is the recorded
    hash; the recipient checks it after decrypting."""
    data_key = AESGCM.generate_key(256)
    header = Header({"cipher": CIPHER, "chunk": CHUNK, "size": size, "sha256": sha256}, {}, 0)
    header = Header(header.content, wrap_for_recipient(header, data_key, recipient,
                                                       recipient_id), 0)
    return encode_header(header), _seal_chunks(src.read, header, data_key,
                                               hashlib.sha256(), name)


def rewrap_for_recipient(path: Path, box_key: bytes, recipient: X25519PublicKey,
                         recipient_id: str) -> tuple[bytes, Header]:
    """A new header for the stored file ``path`` whose data key is sealed to
    ``recipient``; the ciphertext after ``Header.body_offset`` is reused unchanged."""
    with path.open("rb") as f:
        header = read_header(f, path.name)
    data_key = unwrap_with_box(header, box_key, path.name)
    wrap = wrap_for_recipient(header, data_key, recipient, recipient_id)
    return encode_header(Header(header.content, wrap, 0)), header


# -- decrypting ------------------------------------------------------------------------

def open_chunks(f: IO[bytes], header: Header, data_key: bytes,
                name: str) -> Iterator[bytes]:
    """The plaintext chunks of the body that follows ``header`` in ``f``; InvalidModelFile
    when a chunk fails authentication or the file is cut short or too long."""
    aead, aad = AESGCM(data_key), header.chunk_aad()
    count = _chunk_count(header.size, header.chunk)
    for i in range(count):
        want = min(header.chunk, header.size - i * header.chunk) + TAG
        sealed = f.read(want)
        if len(sealed) != want:
            raise InvalidModelFile(f"{name} is truncated: chunk {i} of {count} is incomplete")
        try:
            yield aead.decrypt(_nonce(i, i == count - 1), sealed, aad)
        except InvalidTag:
            raise _unauthentic(name, i, count) from None
    _check_end(f, name)


def _unauthentic(name: str, i: int, count: int) -> InvalidModelFile:
    return InvalidModelFile(f"{name} is not decryptable: chunk {i} of {count} fails "
                            "authentication (the file is damaged or was tampered with)")


def _check_end(f: IO[bytes], name: str) -> None:
    if f.read(1):
        raise InvalidModelFile(f"{name} has bytes after its last chunk (damaged or tampered)")


def _decrypt_into(f: IO[bytes], header: Header, aead: AESGCM, out: memoryview,
                  name: str) -> None:
    """Decrypt the body that follows ``header`` in ``f`` into ``out`` (``header.size``
    bytes): each chunk is read into one reused buffer and decrypted in place, so the
    only allocation is that one chunk."""
    aad, count = header.chunk_aad(), _chunk_count(header.size, header.chunk)
    sealed = memoryview(bytearray(header.chunk + TAG))
    for i in range(count):
        at = i * header.chunk
        want = min(header.chunk, header.size - at)
        if f.readinto(  # type: ignore[attr-defined]
                sealed[:want + TAG]) != want + TAG:
            raise InvalidModelFile(f"{name} is truncated: chunk {i} of {count} is incomplete")
        try:
            aead.decrypt_into(_nonce(i, i == count - 1), sealed[:want + TAG], aad,
                              out[at:at + want])
        except InvalidTag:
            raise _unauthentic(name, i, count) from None
    _check_end(f, name)


def decrypt_into_buffer(path: Path, box_key: bytes, *,
                        expected_sha256: str | None = None) -> bytearray:
    """The plaintext of ``path`` in one writable buffer (OpenVINO shares it without a
    copy); no per-chunk allocations."""
    with path.open("rb") as f:
        header = read_header(f, path.name)
        _check_expected(header, expected_sha256, path.name)
        out = bytearray(header.size)
        _decrypt_into(f, header, AESGCM(unwrap_with_box(header, box_key, path.name)),
                      memoryview(out), path.name)
    return out


#: below this a plaintext is joined from its chunks; above, filled in place
FILL_IN_PLACE = 4 << 20


def _fresh_bytes(size: int) -> tuple[bytes, memoryview] | None:
    """A new, uninitialized ``bytes`` of ``size`` and a writable view of its storage,
    for filling it before anyone else sees it: what CPython's
    ``PyBytes_FromStringAndSize(NULL, size)`` is for. None off CPython."""
    if sys.implementation.name != "cpython":
        return None
    import ctypes

    new = ctypes.pythonapi.PyBytes_FromStringAndSize
    new.restype, new.argtypes = ctypes.py_object, (ctypes.c_char_p, ctypes.c_ssize_t)
    storage = ctypes.pythonapi.PyBytes_AsString
    storage.restype, storage.argtypes = ctypes.c_void_p, (ctypes.py_object,)
    out = new(None, size)
    view = memoryview((ctypes.c_char * size).from_address(storage(out))).cast("B")
    return out, view


def decrypt_to_memory(path: Path, box_key: bytes, *,
                      expected_sha256: str | None = None) -> bytes:
    """The plaintext of the encrypted artifact ``path``, in memory only. Backends want
    ``bytes``, which Python cannot fill in place: a large plaintext is decrypted
    straight into a new ``bytes`` object's storage (:func:`_fresh_bytes`), so a 1 GB
    model takes 1 GB, not twice that (chunks joined, or a buffer copied)."""
    with path.open("rb") as f:
        header = read_header(f, path.name)
        _check_expected(header, expected_sha256, path.name)
        data_key = unwrap_with_box(header, box_key, path.name)
        fresh = _fresh_bytes(header.size) if header.size >= FILL_IN_PLACE else None
        if fresh is None:
            return b"".join(open_chunks(f, header, data_key, path.name))
        out, view = fresh
        with view:
            _decrypt_into(f, header, AESGCM(data_key), view, path.name)
        return out


def plain_sha256(path: Path, box_key: bytes) -> str:
    """The sha256 of the plaintext, computed by decrypting (which authenticates every
    chunk) without keeping it."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        header = read_header(f, path.name)
        for plain in open_chunks(f, header, unwrap_with_box(header, box_key, path.name),
                                 path.name):
            h.update(plain)
    return h.hexdigest()


def _check_expected(header: Header, expected: str | None, name: str) -> None:
    # The header's hash is authenticated by the key wrap: a mismatch means another
    # (validly encrypted) file was put in this one's place.
    if expected is not None and header.sha256 != expected:
        raise InvalidModelFile(f"{name} holds content with sha256 {header.sha256}, but the "
                               f"registry expects {expected}: the stored file was swapped")


# -- model sources ---------------------------------------------------------------------

@dataclass(frozen=True)
class EncryptedModelSource(ModelSource):
    """A stored model whose files are encrypted: read them into memory, never to disk.

    ``expected`` maps file names to the sha256 the registry recorded for them.
    """

    encrypted: ClassVar[bool] = True

    box_key: bytes = field(repr=False)
    expected: dict[str, str] = field(default_factory=dict, repr=False, hash=False,
                                     compare=False)

    def read_file_bytes(self, name: str) -> bytes:
        """The plaintext of the model's file ``name`` (e.g. the IR's ``.bin``)."""
        return decrypt_to_memory(self.companion(name), self.box_key,
                                 expected_sha256=self.expected.get(name))

    def read_file_buffer(self, name: str) -> bytearray:
        """Like :meth:`read_file_bytes`, as one writable buffer (no second copy)."""
        return decrypt_into_buffer(self.companion(name), self.box_key,
                                   expected_sha256=self.expected.get(name))


def plugin_box_key(pm: Any, data_dir: Path) -> Callable[[], bytes | None]:
    """The ``appliance_box_key`` hook of plugin manager ``pm`` as a ``box_key_provider``
    for :class:`appliance.registry.Registry` (None: use ``keys/box.key``)."""
    return lambda: pm.hook.appliance_box_key(data_dir=data_dir)
