"""Digests and summaries of tensors for inference audit records.

Input digest (:func:`tensor_digest`): sha256 over the inputs sorted by name, each as::

    u32 len | name (UTF-8) | u32 len | datatype (ASCII) | u32 ndim | i64 dims... |
    u64 len | data

all integers little-endian; ``data`` is the C-contiguous little-endian element bytes, and
for BYTES each element as u32 length + bytes (the protocol's binary form).
"""

from __future__ import annotations

import base64
import hashlib
import struct
import sys
from collections.abc import Mapping
from typing import Any

import numpy as np

from ..signature import numpy_to_datatype

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_LITTLE = ("<", "|", "=") if sys.byteorder == "little" else ("<", "|")
_DIMS = [struct.Struct(f"<{n}q") for n in range(65)]  # numpy allows up to 64 dimensions
_PREFIXES: dict[tuple[str, Any, int], tuple[bytes, bool]] = {}


def _datatype(dtype: np.dtype[Any]) -> str:
    return "BF16" if dtype.name == "bfloat16" else numpy_to_datatype(dtype)


def _prefix(name: str, dtype: np.dtype[Any], ndim: int) -> tuple[bytes, bool]:
    """(name, datatype and ndim framed; whether the array's memory can be hashed as is),
    cached: the request path sees the same few signatures over and over."""
    key = (name, dtype, ndim)
    found = _PREFIXES.get(key)
    if found is None:
        datatype, label = _datatype(dtype).encode(), name.encode()
        found = (b"".join((_U32.pack(len(label)), label, _U32.pack(len(datatype)), datatype,
                           _U32.pack(ndim))),
                 dtype.kind not in "OSU" and dtype.byteorder in _LITTLE)
        if len(_PREFIXES) > 4096:  # names come from model signatures; bound it anyway
            _PREFIXES.clear()
        _PREFIXES[key] = found
    return found


def _tensor_bytes(array: np.ndarray) -> bytes:
    """Little-endian C-contiguous element bytes; BYTES as u32 length + bytes each."""
    if array.dtype.kind in "OSU":
        parts: list[bytes] = []
        for item in array.ravel(order="C"):
            raw = item if isinstance(item, bytes) else str(item).encode()
            parts += (_U32.pack(len(raw)), raw)
        return b"".join(parts)
    if array.dtype.byteorder not in _LITTLE:
        array = array.astype(array.dtype.newbyteorder("<"))
    return np.ascontiguousarray(array).tobytes()


def tensor_digest(arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 (hex) of the canonical bytes of named tensors (module docstring)."""
    parts: list[Any] = []
    for name in (arrays if len(arrays) == 1 else sorted(arrays)):
        array = arrays[name]
        prefix, as_is = _prefix(name, array.dtype, array.ndim)
        if as_is and array.flags.c_contiguous:
            data: Any = array  # joined straight from the array's memory
            size = array.nbytes
        else:
            data = _tensor_bytes(array)
            size = len(data)
        parts += (prefix, _DIMS[array.ndim].pack(*array.shape), _U64.pack(size), data)
    try:
        return hashlib.sha256(b"".join(parts)).hexdigest()
    except (BufferError, TypeError, ValueError):  # a dtype numpy cannot export (bfloat16)
        joined = b"".join(p if isinstance(p, bytes) else p.tobytes() for p in parts)
        return hashlib.sha256(joined).hexdigest()


def summarize(spec: str, outputs: Mapping[str, np.ndarray]) -> Any:
    """An output summary per a model's ``summary`` setting (JSON-able), or None."""
    if not spec:
        return None
    if spec == "digest":
        return tensor_digest(outputs)
    kind, _, name = spec.partition(":")
    if name not in outputs:  # not requested by this caller: nothing to summarize
        return None
    array = np.asarray(outputs[name])
    if kind == "argmax":
        return np.argmax(array, axis=-1).reshape(-1).tolist() if array.ndim else 0
    return array.tolist()


def stored_inputs(arrays: Mapping[str, Any]) -> dict[str, Any]:
    """Inputs as {name: {datatype, shape, data: base64 of the canonical bytes}}; inputs
    already in that form (made by the writer process's feeder) are kept as they are."""
    return {name: a if isinstance(a, dict) else {
        "datatype": _datatype(a.dtype), "shape": list(a.shape),
        "data": base64.b64encode(_tensor_bytes(a)).decode()}
        for name, a in sorted(arrays.items())}
