"""msgspec Structs for the Open Inference Protocol v2 inference request.

Only the request is typed: responses are built as plain dicts by
:func:`appliance.protocol.codec.encode_response`, which is faster than going through
Structs for a one-shot encode. Unknown JSON fields (``model_name``, extensions a client
adds) are ignored, as the protocol allows.
"""

from __future__ import annotations

from typing import Any

import msgspec

from appliance.errors import BadRequest

__all__ = [
    "InferenceRequest",
    "RequestInput",
    "RequestOutput",
    "decode_inference_header",
]


class RequestInput(msgspec.Struct, omit_defaults=True):
    """One ``$request_input``: the tensor's data is either ``data`` (JSON, flat or nested)
    or ``parameters["binary_data_size"]`` bytes of the binary part of the body."""

    name: str
    shape: list[int]
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
    ``Expected `array`, got `str` - at `$.inputs[0].shape```.
    """
    try:
        return _DECODER.decode(buf)
    except msgspec.ValidationError as exc:  # subclass of DecodeError: keep first
        raise BadRequest(f"invalid inference request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise BadRequest(
            f"the inference request is not valid JSON: {exc}. If the body carries binary "
            "tensors, set the Inference-Header-Content-Length header to the JSON's byte length"
        ) from None
