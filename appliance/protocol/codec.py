"""Transport-agnostic codecs for Open Inference Protocol v2 requests and responses.

Three request forms are understood:

* all JSON (no ``Inference-Header-Content-Length`` header): :func:`decode_request` with
  ``header_length=None``;
* JSON header + binary tensors (Triton's binary tensor data extension): the first
  ``header_length`` bytes are JSON, then each binary input's ``binary_data_size`` bytes in
  input order: :func:`decode_request`;
* raw binary (``Inference-Header-Content-Length: 0``): the whole body is the data of the
  model's single input, whose name, datatype and shape come from the model signature.
  The HTTP layer must dispatch that case to :func:`decode_raw_binary`.

Response choices (see :func:`encode_response`):

* FP16 and BF16 outputs, and BYTES outputs that are not valid UTF-8, are always sent as
  binary data, even when the client asked for JSON. Triton instead fails the request
  ("sending FP16 data via JSON is not supported"); sending binary keeps the inference
  result and stays valid under the extension, which tritonclient parses either way.
* BYTES outputs sent as JSON are UTF-8 strings (no base64: a client could not tell an
  encoded string from a plain one).
* JSON cannot carry NaN or infinity; msgspec writes them as ``null``. Ask for binary
  outputs to get them exactly.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec
import numpy as np

from appliance.errors import ApplianceError, BadRequest
from appliance.protocol.tensors import (
    BF16_DTYPE,
    array_to_binary,
    array_to_json,
    binary_to_array,
    check_datatype,
    json_to_array,
    wire_dtype,
)
from appliance.protocol.types import InferenceRequest, RequestInput, decode_inference_header
from appliance.signature import TensorSpec, numpy_to_datatype

__all__ = [
    "MAX_RANK",
    "decode_header",
    "decode_raw_binary",
    "decode_request",
    "decode_tensors",
    "encode_response",
    "requested_outputs",
]

HEADER_LENGTH = "Inference-Header-Content-Length"
#: numpy's limit on array dimensions; a model's signature bounds the rank further
MAX_RANK = 64


def decode_request(
    body: bytes, header_length: int | None
) -> tuple[InferenceRequest, dict[str, np.ndarray]]:
    """Decode an inference request into the request header and one array per input.

    ``header_length`` is the ``Inference-Header-Content-Length`` header (``None`` when
    absent: the whole body is JSON). Arrays keep the inputs' order; arrays from binary
    data are read-only views of ``body``. Every problem raises :class:`BadRequest`.
    The data plane calls the two halves itself, checking the declared inputs against the
    model's signature in between (:func:`appliance.validation.check_declared_inputs`).
    """
    request, binary = decode_header(body, header_length)
    return request, decode_tensors(request, binary, header_length)


def decode_header(body: bytes, header_length: int | None
                  ) -> tuple[InferenceRequest, memoryview]:
    """The JSON inference request and the binary part of the body after it."""
    view = memoryview(body)
    if header_length is None:
        header, binary = view, view[:0]
    elif header_length <= 0:
        raise BadRequest(
            f"{HEADER_LENGTH} must be a positive byte count, got {header_length} "
            "(0 marks a raw binary request, accepted only by models with one input)"
        )
    elif header_length > len(body):
        raise BadRequest(
            f"{HEADER_LENGTH} is {header_length} but the request body has only {len(body)} bytes"
        )
    else:
        header, binary = view[:header_length], view[header_length:]
    return decode_inference_header(header), binary


def decode_tensors(request: InferenceRequest, binary: memoryview,
                   header_length: int | None) -> dict[str, np.ndarray]:
    """One array per input from JSON ``data`` or the binary part. Nothing is allocated
    before the declared sizes are checked against the bytes present, so the cost is
    bounded by the body (the shapes' ranks are bounded by the signature check before)."""
    sizes = [_binary_size(inp) for inp in request.inputs]
    _check_binary_total(sum(s or 0 for s in sizes), len(binary), header_length)

    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for index, (inp, size) in enumerate(zip(request.inputs, sizes, strict=True)):
        if inp.name in arrays:
            raise BadRequest(f"input '{inp.name}' appears more than once in the request")
        check_datatype(inp.datatype, inp.name)
        if len(inp.shape) > MAX_RANK:
            raise BadRequest(f"input '{inp.name}' has {len(inp.shape)} dimensions; at most "
                             f"{MAX_RANK} are supported")
        if any(dim < 0 for dim in inp.shape):
            raise BadRequest(
                f"input '{inp.name}' has shape {inp.shape}: dimensions must not be negative"
            )
        if size is None:
            arrays[inp.name] = json_to_array(inp.name, inp.datatype, inp.shape, inp.data, index)
        else:
            chunk = binary[offset : offset + size]
            arrays[inp.name] = binary_to_array(chunk, inp.name, inp.datatype, inp.shape)
            offset += size
    return arrays


def _binary_size(inp: RequestInput) -> int | None:
    """The input's ``binary_data_size``, or ``None`` when its data is JSON."""
    params = inp.parameters or {}
    if "shared_memory_region" in params:
        raise BadRequest(
            f"input '{inp.name}' uses shared memory, which this server does not support"
        )
    size = params.get("binary_data_size")
    if size is None:
        if inp.data is None:
            raise BadRequest(
                f"input '{inp.name}' has no data: give 'data' or, for binary data, "
                "parameters.binary_data_size"
            )
        return None
    if inp.data is not None:
        raise BadRequest(
            f"input '{inp.name}' sets both 'data' and parameters.binary_data_size: use one"
        )
    if type(size) is not int or size < 0:
        raise BadRequest(
            f"input '{inp.name}': parameters.binary_data_size must be a non-negative "
            f"integer, got {size!r}"
        )
    return size


def _check_binary_total(declared: int, present: int, header_length: int | None) -> None:
    if declared == present:
        return
    if header_length is None:
        raise BadRequest(
            f"inputs declare {declared} bytes of binary data (parameters.binary_data_size) "
            f"but the request has no {HEADER_LENGTH} header to say where the JSON ends"
        )
    how = "shorter" if present < declared else "longer"
    raise BadRequest(
        f"the binary data after the {header_length}-byte JSON header is {how} than declared: "
        f"{present} bytes present, binary_data_size totals {declared}"
    )


def decode_raw_binary(body: bytes, spec: TensorSpec) -> np.ndarray:
    """Decode a raw binary request (``Inference-Header-Content-Length: 0``) for a model
    whose single input is ``spec``.

    The shape is ``spec.shape`` with its one ``-1`` (if any) inferred from the byte count.
    A BYTES input takes the whole body as one element without a length prefix (say, one
    encoded image), every ``-1`` becoming 1.
    """
    check_datatype(spec.datatype, spec.name)
    view = memoryview(body)
    if spec.datatype == "BYTES":
        shape = [1 if dim < 0 else dim for dim in spec.shape]
        if math.prod(shape) != 1:
            raise BadRequest(
                f"a raw binary request carries one BYTES element, but input '{spec.name}' "
                f"has shape {list(spec.shape)}"
            )
        out = np.empty(1, dtype=object)
        out[0] = bytes(view)
        return out.reshape(shape)
    itemsize = wire_dtype(spec.datatype, spec.name).itemsize
    if len(view) % itemsize:
        raise BadRequest(
            f"raw binary request: {len(view)} bytes is not a whole number of "
            f"{spec.datatype} elements ({itemsize} bytes each) for input '{spec.name}'"
        )
    count = len(view) // itemsize
    shape = list(spec.shape)
    free = [i for i, dim in enumerate(shape) if dim < 0]
    known = math.prod(dim for dim in shape if dim >= 0)
    if len(free) > 1:
        raise BadRequest(
            f"raw binary request: input '{spec.name}' has shape {shape} with more than one "
            "variable dimension, so its shape cannot be inferred; send a JSON header"
        )
    if free and known and count % known == 0:
        shape[free[0]] = count // known
    elif known != count or free:
        raise BadRequest(
            f"raw binary request: {count} {spec.datatype} elements do not fit input "
            f"'{spec.name}' of shape {list(spec.shape)}"
        )
    return binary_to_array(view, spec.name, spec.datatype, shape)


def requested_outputs(request: InferenceRequest) -> tuple[list[str] | None, set[str] | bool]:
    """The outputs to return (``None``: all) and which are binary.

    The second item is a set of names when the request lists its outputs, else the
    request-level ``parameters.binary_data_output`` (default false) for every output.
    ``outputs[*].parameters.binary_data`` overrides that default per output.
    """
    default = (request.parameters or {}).get("binary_data_output", False)
    if type(default) is not bool:
        raise BadRequest("request parameter 'binary_data_output' must be true or false")
    if not request.outputs:
        return None, default
    names: list[str] = []
    seen: set[str] = set()
    binary: set[str] = set()
    for out in request.outputs:
        if out.name in seen:
            raise BadRequest(f"output '{out.name}' is requested more than once")
        seen.add(out.name)
        params = out.parameters or {}
        if "classification" in params or "shared_memory_region" in params:
            raise BadRequest(
                f"output '{out.name}': the classification and shared memory extensions "
                "are not supported"
            )
        flag = params.get("binary_data", default)
        if type(flag) is not bool:
            raise BadRequest(f"output '{out.name}': parameters.binary_data must be true or false")
        names.append(out.name)
        if flag:
            binary.add(out.name)
    return names, binary


def _datatype(name: str, arr: np.ndarray) -> str:
    if BF16_DTYPE is not None and arr.dtype == BF16_DTYPE:
        return "BF16"
    try:
        return numpy_to_datatype(arr.dtype)
    except ValueError as exc:
        raise ApplianceError(f"the model's output '{name}' cannot be sent: {exc}") from None


def encode_response(
    model_name: str,
    model_version: str | None,
    outputs: dict[str, np.ndarray],
    *,
    request_id: str | None,
    parameters: dict[str, Any] | None,
    binary_outputs: set[str] | bool,
) -> tuple[bytes, dict[str, str]]:
    """Encode an inference response; returns the body and the headers to add.

    Outputs in ``binary_outputs`` (or all, when ``True``) go after the JSON as binary data
    with ``parameters.binary_data_size``; the others are JSON with flat ``data``. FP16,
    BF16 and non-UTF-8 BYTES outputs are always binary. With any binary output the headers
    are ``Content-Type: application/octet-stream`` and ``Inference-Header-Content-Length``,
    else ``Content-Type: application/json``.
    """
    entries: list[dict[str, Any]] = []
    buffers: list[bytes | memoryview] = []
    for name, value in outputs.items():
        arr = np.asarray(value)
        datatype = _datatype(name, arr)
        entry: dict[str, Any] = {"name": name, "datatype": datatype, "shape": list(arr.shape)}
        want_binary = binary_outputs if type(binary_outputs) is bool else name in binary_outputs
        data = None if want_binary else array_to_json(arr, datatype)
        if data is None:
            raw = array_to_binary(arr, datatype)
            entry["parameters"] = {"binary_data_size": len(raw)}
            buffers.append(raw)
        else:
            entry["data"] = data
        entries.append(entry)
    doc: dict[str, Any] = {"model_name": model_name}
    if model_version is not None:
        doc["model_version"] = model_version
    if request_id is not None:
        doc["id"] = request_id
    if parameters:
        doc["parameters"] = parameters
    doc["outputs"] = entries
    header = msgspec.json.encode(doc)
    if not buffers:
        return header, {"Content-Type": "application/json"}
    return b"".join([header, *buffers]), {
        "Content-Type": "application/octet-stream",
        HEADER_LENGTH: str(len(header)),
    }
