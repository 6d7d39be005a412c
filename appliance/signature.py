"""Tensor signatures and the Open Inference Protocol datatypes.

A model's signature is a list of :class:`TensorSpec` for its inputs and one for its
outputs. Shapes use ``-1`` for a dimension of any size (usually the batch).
"""

from __future__ import annotations

import contextlib
from typing import Any

import msgspec
import numpy as np

# Open Inference Protocol datatype -> numpy dtype. BYTES is an object array of bytes.
DATATYPE_TO_NUMPY: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
NUMPY_TO_DATATYPE: dict[str, str] = {
    dt.str: name for name, dt in DATATYPE_TO_NUMPY.items() if name != "BYTES"
}
DATATYPES = tuple(DATATYPE_TO_NUMPY) + ("BF16",)


_DTYPE_CACHE: dict[Any, str] = {}


def numpy_to_datatype(dtype: np.dtype[Any]) -> str:
    """The protocol datatype for a numpy dtype (object and string dtypes are BYTES)."""
    try:  # on the response path for every output: a dict hit instead of dtype arithmetic
        return _DTYPE_CACHE[dtype]
    except (KeyError, TypeError):
        pass
    result = _numpy_to_datatype(np.dtype(dtype))
    with contextlib.suppress(TypeError):
        _DTYPE_CACHE[dtype] = result
    return result


def _numpy_to_datatype(dtype: np.dtype[Any]) -> str:
    if dtype.kind in ("O", "S", "U"):
        return "BYTES"
    try:
        return NUMPY_TO_DATATYPE[dtype.newbyteorder("=").str]
    except KeyError:
        raise ValueError(f"numpy dtype {dtype} has no Open Inference Protocol datatype") from None


class TensorSpec(msgspec.Struct, frozen=True):
    """One named tensor of a signature: protocol datatype and shape (``-1`` = any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def accepts_shape(self, shape: tuple[int, ...] | list[int]) -> bool:
        """True when ``shape`` has the same rank and matches every fixed dimension."""
        if len(shape) != len(self.shape):
            return False
        return all(want < 0 or want == got for want, got in zip(self.shape, shape))


def specs_from_dicts(items: list[dict[str, Any]]) -> list[TensorSpec]:
    return [TensorSpec(d["name"], d["datatype"], tuple(d["shape"])) for d in items]
