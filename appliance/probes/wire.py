"""A golden example as an inference request body, and the answer back as arrays.

Probes speak the same Open Inference Protocol bytes as any client, through
:meth:`~appliance.dataplane.DataPlane.infer`, so they exercise decoding, validation,
the execution (batcher or pool) and encoding. Every tensor travels in the binary tensor
extension both ways (``binary_data_size`` inputs, ``binary_data_output``): FP16 and
BF16, which JSON cannot carry, need no special case, and the answer is compared
bit-exact as the model produced it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import numpy as np

from ..errors import BadRequest
from ..protocol.tensors import array_to_binary, binary_to_array
from .golden import tensor_array

__all__ = ["HEADER_LENGTH", "decode_answer", "encode_example"]

HEADER_LENGTH = "Inference-Header-Content-Length"


def encode_example(inputs: Sequence[Mapping[str, Any]], request_id: str) -> tuple[bytes, int]:
    """The request body for golden ``inputs`` and its JSON header's length."""
    entries, buffers = [], []
    for index, tensor in enumerate(inputs):
        raw = bytes(array_to_binary(tensor_array(tensor, index), str(tensor["datatype"])))
        entries.append({"name": tensor["name"], "datatype": tensor["datatype"],
                        "shape": list(tensor["shape"]),
                        "parameters": {"binary_data_size": len(raw)}})
        buffers.append(raw)
    header = msgspec.json.encode({"id": request_id, "inputs": entries,
                                  "parameters": {"binary_data_output": True}})
    return b"".join([header, *buffers]), len(header)


def decode_answer(body: bytes, headers: Mapping[str, str]
                  ) -> dict[str, tuple[np.ndarray, str]]:
    """Output name → (array, datatype) of an inference answer."""
    length = int(headers.get(HEADER_LENGTH, len(body)))
    doc = msgspec.json.decode(body[:length])
    view = memoryview(body)[length:]
    out: dict[str, tuple[np.ndarray, str]] = {}
    offset = 0
    for entry in doc.get("outputs", []):
        name, datatype, shape = entry["name"], entry["datatype"], list(entry["shape"])
        size = (entry.get("parameters") or {}).get("binary_data_size")
        if size is None:
            if "data" not in entry:
                raise BadRequest(f"output `{name}` came back with neither data nor "
                                 "binary_data_size")
            out[name] = (tensor_array(entry), datatype)
            continue
        out[name] = (binary_to_array(view[offset:offset + size], name, datatype, shape),
                     datatype)
        offset += size
    return out
