"""msgspec Structs for the Open Inference Protocol v2 inference request.

Only the request is typed: responses are built as plain dicts by
:func:`appliance.protocol.codec.encode_response`, which is faster than going through
Structs for a one-shot encode. Unknown JSON fields (``model_name``, extensions a client
adds) are ignored, as the protocol allows.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

import msgspec

from appliance.errors import BadRequest

__all__ = [
    "InferenceRequest",
    "RequestInput",
    "RequestOutput",
    "decode_inference_header",
]


#: a dimension fits an int64 (checked in C while decoding), so a shape's product and its
#: message stay small however many digits a client sends
Dim = Annotated[int, msgspec.Meta(le=2**63 - 1)]


class RequestInput(msgspec.Struct, omit_defaults=True):
    """One ``$request_input``: the tensor's data is either ``data`` (JSON, flat or nested)
    or ``parameters["binary_data_size"]`` bytes of the binary part of the body."""

    name: str
    shape: list[Dim]
    datatype: str
    data: Any = None
    parameters: dict[str, Any] | None = None


class RequestOutput(msgspec.Struct, omit_defaults=True):
    """One ``$request_output``: ``parameters["binary_data"]`` asks for binary data."""

    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequest(msgspec.Struct, omit_defaults=True):
    """The JSON ``$inference_request`` object (the inference header of a binary request).

    ``parameters["binary_data_output"]`` asks for every output as binary data;
    ``outputs`` limits (and orders) the outputs returned, ``None`` meaning all of them.
    """

    inputs: list[RequestInput]
    id: str | None = None
    parameters: dict[str, Any] | None = None
    outputs: list[RequestOutput] | None = None


_DECODER = msgspec.json.Decoder(InferenceRequest)


def decode_inference_header(buf: bytes | memoryview) -> InferenceRequest:
    """Decode the JSON inference request, mapping every msgspec error to :class:`BadRequest`.

    Type errors keep msgspec's wording and JSON path, e.g.
    ``Expected `array`, got `str` - at `$.inputs[0].shape```. Decoding is linear in the
    body; nesting deeper than the interpreter's recursion limit is refused with 400.
    """
    try:
        return _DECODER.decode(buf)
    except msgspec.ValidationError as exc:  # subclass of DecodeError: keep first
        raise BadRequest(f"invalid inference request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(_decode_error_message(buf, str(exc))) from None
    except RecursionError:
        raise BadRequest(
            "the inference request is nested too deeply (about 1,000 levels of JSON arrays "
            "or objects): send tensor data flat, or nested only as deep as the input's shape"
        ) from None


_TRAILING = re.compile(r"trailing characters \(byte (\d+)\)")
# a \uD800-\uDBFF escape not followed by a \uDC00-\uDFFF one, or a low one not preceded
# by a high one (an even run of backslashes before it is not an escape)
_LONE_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*(\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})")


def _decode_error_message(buf: bytes | memoryview, detail: str) -> str:
    """Say what to fix for the common ways a body is not one JSON document (error path
    only: each check is one linear scan)."""
    if len(buf) == 0:
        return ("the request has no body: send an inference request as JSON, e.g. "
                '{"inputs": [{"name": ..., "datatype": ..., "shape": [...], "data": [...]}]}')
    trailing = _TRAILING.search(detail)
    if trailing:
        end = int(trailing.group(1)) - 1  # msgspec counts the first extra byte too
        return (f"the body continues after the JSON inference request ends at byte {end}: "
                f"if the rest is binary tensor data, send the header "
                f"Inference-Header-Content-Length: {end}")
    surrogate = _LONE_SURROGATE.search(bytes(buf))
    if surrogate:
        return (f"the inference request has a lone UTF-16 surrogate escape "
                f"{surrogate.group(1).decode()!s} at byte {surrogate.start(1)}: JSON strings "
                "must be valid Unicode (a high surrogate \\uD800-\\uDBFF must be followed "
                "by a low one \\uDC00-\\uDFFF)")
    return (f"the inference request is not valid JSON: {detail}. If the body carries binary "
            "tensors, set the Inference-Header-Content-Length header to the JSON's byte length")
