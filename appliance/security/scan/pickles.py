"""Whether a file is a pickle, which runs code when loaded.

A pickle header (protocol 2-5), a protocol 0/1 stream that imports a callable, a pickle
compressed with gzip/zlib/bz2/xz/lzma (joblib), a zip holding ``data.pkl`` (PyTorch
checkpoints) or pickles, a ``.npy`` of objects, and the pickle-only suffixes (``.pkl``,
``.joblib``, ``.pt``, ...). Random bytes, as in weight files, are told apart from a
pickle within a few opcodes.
"""

from __future__ import annotations

import bz2
import io
import lzma
import pickletools
import re
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Any

PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib", ".pt", ".pth", ".ckpt", ".dill"})
HEAD_BYTES = 64 << 10  # bytes read from each file for the content checks
_CALL_OPS = frozenset({"REDUCE", "OBJ", "NEWOBJ", "NEWOBJ_EX", "BUILD", "INST"})
_STRING_OPS = frozenset({"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE",
                         "SHORT_BINSTRING", "BINSTRING", "STRING"})
_MEMO_OPS = frozenset({"MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "FRAME"})
_IMPORT_ARG = re.compile(r"[A-Za-z_][\w.]* [A-Za-z_][\w.]*\Z")  # GLOBAL's "module name"
_DOTTED = re.compile(r"[A-Za-z_][\w.]*\Z")
_ZIP_MEMBER_LIMIT = 10_000


def _pickle_walk(data: bytes) -> tuple[int, bool, bool, str | None]:
    """Read ``data`` as pickle opcodes: (opcodes read, a named callable imported, that
    import then called, None when STOP was reached else why reading stopped)."""
    count, imported, called = 0, False, False
    strings: list[Any] = []  # what the last opcodes pushed, for STACK_GLOBAL's names
    try:
        for opcode, arg, _ in pickletools.genops(io.BytesIO(data)):
            count += 1
            name = opcode.name
            if name in ("GLOBAL", "INST"):
                imported = imported or bool(isinstance(arg, str) and _IMPORT_ARG.match(arg))
            elif name == "STACK_GLOBAL":
                imported = imported or (len(strings) >= 2 and all(
                    isinstance(a, str) and _DOTTED.match(a) for a in strings[-2:]))
            if imported and name in _CALL_OPS:
                called = True
            if name not in _MEMO_OPS:
                strings.append(arg if name in _STRING_OPS else None)
            if name == "STOP":
                return count, imported, called, None
    except ValueError as exc:  # an unknown opcode, bad argument, or the data ran out
        return count, imported, called, str(exc)
    return count, imported, called, "exhausted"


def _well_formed(data: bytes) -> bool:
    """Whether ``data`` is a complete pickle with a consistent stack, marks and memo
    (what ``pickletools.dis`` checks): chance bytes essentially never are."""
    try:
        pickletools.dis(io.BytesIO(data), out=io.StringIO())
    except Exception:  # noqa: BLE001 - dis raises ValueError, IndexError, KeyError ...
        return False
    return True


def looks_like_pickle(data: bytes, *, complete: bool = True) -> bool:
    """Whether ``data`` is a pickle stream; ``complete=False`` when it is only the first
    bytes of a longer file, so running out of data is not a reason to doubt it.

    A named callable imported and then called is refused whatever follows (an exploit
    need not end well-formed). Otherwise a stream with a protocol 2-5 header must be a
    well-formed pickle or run to the end of the prefix; a headerless (protocol 0/1) one
    must be well-formed and import something. Random bytes, as in weight files, fail
    these within a few opcodes.
    """
    count, imported, called, stopped = _pickle_walk(data)
    if called:
        return True
    if len(data) >= 2 and data[0] == 0x80 and 2 <= data[1] <= 5:
        if stopped is None:
            return _well_formed(data)
        ran_out = any(w in stopped for w in ("exhausted", "not enough", "only", "newline"))
        return not complete and ran_out and count >= 2
    return stopped is None and imported and _well_formed(data)


def _decompressed_head(head: bytes) -> bytes | None:
    """The first bytes of a gzip/zlib/bz2/xz/lzma stream (joblib's compressors)."""
    try:
        if head[:2] == b"\x1f\x8b":
            return zlib.decompressobj(wbits=31).decompress(head, HEAD_BYTES)
        if head[:1] == b"\x78" and head[1:2] in (b"\x01", b"\x5e", b"\x9c", b"\xda"):
            return zlib.decompressobj().decompress(head, HEAD_BYTES)
        if head[:3] == b"BZh":
            return bz2.BZ2Decompressor().decompress(head, HEAD_BYTES)
        if head[:6] == b"\xfd7zXZ\x00":
            return lzma.LZMADecompressor(lzma.FORMAT_XZ).decompress(head, HEAD_BYTES)
        if head[:3] == b"\x5d\x00\x00":
            return lzma.LZMADecompressor(lzma.FORMAT_ALONE).decompress(head, HEAD_BYTES)
    except (OSError, EOFError, zlib.error, lzma.LZMAError, ValueError):
        return None
    return None


def _npy_has_objects(head: bytes) -> bool:
    """Whether a ``.npy`` header declares an object dtype (stored as a pickle)."""
    import ast

    import numpy as np

    major = head[6] if len(head) > 7 else 0
    width = 2 if major == 1 else 4
    start = 8 + width
    size = int.from_bytes(head[8:start], "little")
    try:
        header = ast.literal_eval(head[start:start + size].decode("latin1"))
        return bool(np.lib.format.descr_to_dtype(header["descr"]).hasobject)
    except (ValueError, SyntaxError, KeyError, TypeError):
        return True  # an unreadable header is not worth the risk


def _zip_reason(path: Path) -> str | None:
    try:
        with zipfile.ZipFile(path) as zf:
            for info in zf.infolist()[:_ZIP_MEMBER_LIMIT]:
                name = info.filename
                if PurePosixPath(name).name == "data.pkl":
                    return (f"a zip holding {name} (the PyTorch checkpoint layout, "
                            "torch.save)")
                if PurePosixPath(name).suffix.lower() in PICKLE_SUFFIXES:
                    return f"a zip holding the pickle {name}"
                with zf.open(info) as member:
                    head = member.read(HEAD_BYTES)
                if looks_like_pickle(head, complete=len(head) < HEAD_BYTES):
                    return f"a zip holding {name}, which is a pickle"
                if head[:6] == b"\x93NUMPY" and _npy_has_objects(head):
                    return f"a zip holding {name}, a numpy array of Python objects"
    except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError):
        return None  # a chance zip signature in weights: the other checks still apply
    return None


def pickle_reason(path: Path, head: bytes) -> str | None:
    """Why the file at ``path`` (first bytes ``head``) is a pickle, or None."""
    suffix = path.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return f"{suffix} files are pickles"
    if looks_like_pickle(head, complete=len(head) < HEAD_BYTES):
        return "the file is a pickle stream"
    inner = _decompressed_head(head)
    if inner and looks_like_pickle(inner, complete=False):
        return "the file is a compressed pickle (joblib's format)"
    if head[:6] == b"\x93NUMPY" and _npy_has_objects(head):
        return "the file is a numpy array of Python objects"
    if head[:2] == b"PK" and zipfile.is_zipfile(path):
        return _zip_reason(path)
    return None
