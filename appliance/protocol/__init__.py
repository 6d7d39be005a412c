"""Open Inference Protocol v2 codecs: JSON and Triton's binary tensor data extension.

Transport-agnostic: the HTTP layer passes the body and the
``Inference-Header-Content-Length`` header in, and sends back the body and headers that
:func:`encode_response` returns. See :mod:`appliance.protocol.codec` for the choices
made where the protocol leaves room (FP16/BF16 outputs, BYTES as JSON, raw binary).
"""

from appliance.protocol.codec import (
    HEADER_LENGTH,
    decode_raw_binary,
    decode_request,
    encode_response,
    requested_outputs,
)
from appliance.protocol.types import (
    InferenceRequest,
    RequestInput,
    RequestOutput,
    decode_inference_header,
)

__all__ = [
    "HEADER_LENGTH",
    "InferenceRequest",
    "RequestInput",
    "RequestOutput",
    "decode_inference_header",
    "decode_raw_binary",
    "decode_request",
    "encode_response",
    "requested_outputs",
]
