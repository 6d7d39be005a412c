"""Per-tensor conversions between Open Inference Protocol data and numpy arrays.

JSON data is validated by ``msgspec.convert`` against a per-datatype list type (element
kind and integer range checked in C, with a JSON path in the error), then turned into an
array by one ``np.asarray`` call: no per-element Python loop for numeric data. Binary
data becomes a zero-copy, read-only ``np.frombuffer`` view of the request body. BYTES
tensors are object arrays of ``bytes``; their elements are variable-length, so they are
the one place with a Python loop.
"""

from __future__ import annotations

import functools
import math
import sys
from struct import unpack_from
from types import GenericAlias
from typing import Annotated, Any

import msgspec
import numpy as np

from appliance.errors import BadRequest
from appliance.signature import DATATYPE_TO_NUMPY, DATATYPES

try:  # BF16 has no numpy dtype; ml_dtypes provides one (tritonclient uses it too).
    import ml_dtypes

    BF16_DTYPE: np.dtype[Any] | None = np.dtype(ml_dtypes.bfloat16)
except ImportError:  # pragma: no cover - ml_dtypes ships with the test extras
    BF16_DTYPE = None

BINARY_ONLY = frozenset({"FP16", "BF16"})


def _int_element(dtype: np.dtype[Any]) -> Any:
    info = np.iinfo(dtype)
    if info.max > 2**63 - 1:  # msgspec bounds must fit int64: numpy checks UINT64's top
        return Annotated[int, msgspec.Meta(ge=0)]
    return Annotated[int, msgspec.Meta(ge=int(info.min), le=int(info.max))]


_JSON_ELEMENT: dict[str, Any] = {
    "BOOL": bool,
    "FP32": float,
    "FP64": float,
    "BYTES": str,
    **{name: _int_element(dt) for name, dt in DATATYPE_TO_NUMPY.items() if dt.kind in "iu"},
}


@functools.cache
def _json_type(datatype: str, depth: int) -> Any:
    """``list[...list[element]]`` nested ``depth`` times, for ``msgspec.convert``."""
    typ = _JSON_ELEMENT[datatype]
    for _ in range(depth):
        typ = GenericAlias(list, (typ,))
    return typ


def check_datatype(datatype: str, name: str, what: str = "input") -> None:
    if datatype not in DATATYPES:
        raise BadRequest(
            f"{what} '{name}' has unknown datatype '{datatype}': use one of " + ", ".join(DATATYPES)
        )


def wire_dtype(datatype: str, name: str) -> np.dtype[Any]:
    """The little-endian numpy dtype of a fixed-size datatype's binary form."""
    if datatype == "BF16":
        if BF16_DTYPE is None:
            raise BadRequest(
                f"input '{name}' is BF16, which needs the ml_dtypes package on the server"
            )
        return BF16_DTYPE
    return DATATYPE_TO_NUMPY[datatype].newbyteorder("<")


def json_to_array(name: str, datatype: str, shape: list[int], data: Any, index: int) -> np.ndarray:
    """Convert an input's JSON ``data`` (flat, or nested exactly as ``shape``)."""
    if datatype in BINARY_ONLY:
        raise BadRequest(
            f"input '{name}' is {datatype}, which JSON cannot carry: send it with the binary "
            "tensor extension (parameters.binary_data_size and the "
            "Inference-Header-Content-Length header)"
        )
    if not isinstance(data, list):
        raise BadRequest(f"input '{name}': 'data' must be a JSON array, got {type(data).__name__}")
    nested = bool(data) and isinstance(data[0], list)
    try:
        values = msgspec.convert(data, _json_type(datatype, max(len(shape), 1) if nested else 1))
    except msgspec.ValidationError as exc:
        where = str(exc).replace("`$", f"`$.inputs[{index}].data")
        raise BadRequest(f"input '{name}' ({datatype}) has invalid data: {where}") from None
    try:
        if datatype == "BYTES":
            arr = np.array(values, dtype=object)
        else:
            with np.errstate(over="raise"):
                arr = np.asarray(values, dtype=DATATYPE_TO_NUMPY[datatype])
    except ValueError:  # ragged nested lists
        raise BadRequest(f"input '{name}': nested data is not rectangular") from None
    except (FloatingPointError, OverflowError):
        raise BadRequest(f"input '{name}' has a value out of range for {datatype}") from None
    count = math.prod(shape)
    if nested:
        if arr.shape != tuple(shape):
            raise BadRequest(
                f"input '{name}': nested data has shape {list(arr.shape)} but the input's "
                f"shape is {shape}; send the data flat or nested exactly as the shape"
            )
    elif arr.size != count:
        raise BadRequest(
            f"input '{name}' has shape {shape}, so it needs {count} elements, "
            f"but data has {arr.size}"
        )
    if datatype == "BYTES":
        arr = _encode_strings(arr, name)
    return arr.reshape(shape)


def _encode_strings(arr: np.ndarray, name: str) -> np.ndarray:
    out = np.empty(arr.size, dtype=object)
    try:
        out[:] = [s.encode() for s in arr.ravel().tolist()]
    except UnicodeEncodeError as exc:
        raise BadRequest(f"input '{name}' has a string that is not valid UTF-8: {exc}") from None
    return out


def binary_to_array(buf: memoryview, name: str, datatype: str, shape: list[int]) -> np.ndarray:
    """Convert an input's binary data; numeric arrays are read-only views of ``buf``."""
    count = math.prod(shape)
    if datatype == "BYTES":
        return deserialize_bytes(buf, count, name).reshape(shape)
    dtype = wire_dtype(datatype, name)
    expected = count * dtype.itemsize
    if len(buf) != expected:
        raise BadRequest(
            f"input '{name}' is {datatype} with shape {shape}: its binary data must be "
            f"{expected} bytes ({count} elements x {dtype.itemsize}) but binary_data_size "
            f"is {len(buf)}"
        )
    if datatype == "BOOL":
        raw = np.frombuffer(buf, dtype=np.uint8)
        if raw.size and raw.max() > 1:
            raise BadRequest(f"input '{name}' is BOOL: each byte must be 0 or 1")
        return raw.view(np.bool_).reshape(shape)
    arr = np.frombuffer(buf, dtype=dtype)
    if not arr.dtype.isnative:  # only on big-endian hosts
        arr = arr.astype(arr.dtype.newbyteorder("="))
    return arr.reshape(shape)


def deserialize_bytes(buf: memoryview, count: int, name: str) -> np.ndarray:
    """Parse ``count`` BYTES elements, each a 4-byte little-endian length then the bytes.

    Each element takes at least its 4-byte prefix, so a count the data cannot hold is
    refused before anything is allocated for it.
    """
    size, offset = len(buf), 0
    if count > size // 4:
        raise BadRequest(
            f"BYTES input '{name}': its shape declares {count} elements, but its {size} "
            f"bytes of binary data hold at most {size // 4} (each element has a 4-byte "
            "length prefix); check the shape and binary_data_size"
        )
    out = np.empty(count, dtype=object)
    for i in range(count):
        if offset + 4 > size:
            raise BadRequest(
                f"BYTES input '{name}': its {size} bytes of binary data end before element "
                f"{i}'s 4-byte length prefix ({count} elements expected)"
            )
        (length,) = unpack_from("<I", buf, offset)
        offset += 4
        if offset + length > size:
            raise BadRequest(
                f"BYTES input '{name}': element {i} has length prefix {length} but only "
                f"{size - offset} bytes of binary data remain"
            )
        out[i] = bytes(buf[offset : offset + length])
        offset += length
    if offset != size:
        raise BadRequest(
            f"BYTES input '{name}': {size - offset} bytes left over after its {count} "
            "elements; check the shape and the 4-byte length prefixes"
        )
    return out


def serialize_bytes(arr: np.ndarray) -> bytes:
    """Encode an array of bytes/str (other objects via ``str``) as length-prefixed elements."""
    parts: list[bytes] = []
    for item in arr.ravel().tolist():
        if not isinstance(item, bytes):
            item = (item if isinstance(item, str) else str(item)).encode()
        parts.append(len(item).to_bytes(4, "little"))
        parts.append(item)
    return b"".join(parts)


def array_to_binary(arr: np.ndarray, datatype: str) -> bytes | memoryview:
    """The binary form of an output: little-endian, row major, no padding."""
    if datatype == "BYTES":
        return serialize_bytes(arr)
    flat = np.ascontiguousarray(arr).reshape(-1)
    order = flat.dtype.byteorder
    if order == ">" or (order == "=" and sys.byteorder == "big"):
        flat = flat.byteswap()  # the bytes become little-endian; the dtype is not used again
    return flat.view(np.uint8).data


def array_to_json(arr: np.ndarray, datatype: str) -> list[Any] | None:
    """Flat JSON data for an output, or ``None`` when JSON cannot carry it (FP16, BF16,
    BYTES that are not UTF-8): such outputs are sent binary."""
    if datatype in BINARY_ONLY:
        return None
    items = arr.ravel().tolist()
    if datatype != "BYTES":
        return items
    try:
        return [
            x.decode() if isinstance(x, bytes) else x if isinstance(x, str) else str(x)
            for x in items
        ]
    except UnicodeDecodeError:
        return None
