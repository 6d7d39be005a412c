"""Property tests for the JSON and binary codecs: every datatype, random shapes and values.

tritonclient is the peer: requests it builds (JSON or binary) decode to the arrays it was
given, and responses we encode parse back in tritonclient to the arrays we sent. Shapes
and values come from hypothesis; the example counts are bounded so the module runs in a
few seconds.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from appliance.protocol.codec import HEADER_LENGTH, decode_request, encode_response

NUMERIC = {
    "BOOL": np.dtype(np.bool_), "UINT8": np.dtype(np.uint8), "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32), "UINT64": np.dtype(np.uint64), "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16), "INT32": np.dtype(np.int32), "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16), "FP32": np.dtype(np.float32), "FP64": np.dtype(np.float64),
}
JSON_CAPABLE = [d for d in NUMERIC if d not in ("FP16",)]
SHAPES = hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5)
PROFILE = settings(max_examples=60, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])


def _arrays(datatype: str) -> st.SearchStrategy[np.ndarray]:
    dtype = NUMERIC[datatype]
    # JSON cannot carry NaN or infinity (sent as null): finite values only
    elements = (hnp.from_dtype(dtype, allow_nan=False, allow_infinity=False)
                if dtype.kind == "f" else None)
    return hnp.arrays(dtype, SHAPES, elements=elements)


def _bytes_arrays() -> st.SearchStrategy[np.ndarray]:
    return SHAPES.flatmap(lambda shape: st.lists(
        st.binary(max_size=12), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)),
    ).map(lambda items: np.array(items + [b""], dtype=object)[:-1].reshape(shape)))


def _text_arrays() -> st.SearchStrategy[np.ndarray]:
    text = st.text(st.characters(exclude_categories=("Cs",)), max_size=8)
    return SHAPES.flatmap(lambda shape: st.lists(
        text, min_size=int(np.prod(shape)), max_size=int(np.prod(shape)),
    ).map(lambda items: np.array([s.encode() for s in items] + [b""],
                                 dtype=object)[:-1].reshape(shape)))


def _request(arr: np.ndarray, datatype: str, binary: bool) -> tuple[bytes, int | None]:
    inp = httpclient.InferInput("x", list(arr.shape), datatype)
    inp.set_data_from_numpy(arr, binary_data=binary)
    body, json_size = httpclient.InferenceServerClient.generate_request_body([inp])
    return body, json_size


def _same(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    if want.dtype == object:
        assert got.ravel().tolist() == want.ravel().tolist()
    else:
        np.testing.assert_array_equal(got.astype(want.dtype), want)


@PROFILE
@given(data=st.data(), datatype=st.sampled_from(list(NUMERIC)), binary=st.booleans())
def test_tritonclient_requests_decode_to_the_arrays_sent(data, datatype, binary):
    if datatype == "FP16":
        binary = True  # JSON cannot carry FP16 (tritonclient refuses it too)
    arr = data.draw(_arrays(datatype))
    body, json_size = _request(arr, datatype, binary)
    request, arrays = decode_request(body, json_size)
    assert [i.name for i in request.inputs] == ["x"]
    _same(arrays["x"], arr)


@PROFILE
@given(arr=_bytes_arrays())
def test_binary_bytes_round_trip_any_bytes(arr):
    body, json_size = _request(arr, "BYTES", True)
    _same(decode_request(body, json_size)[1]["x"], arr)


@PROFILE
@given(arr=_text_arrays(), binary=st.booleans())
def test_bytes_as_text_round_trip_in_json_and_binary(arr, binary):
    body, json_size = _request(arr, "BYTES", binary)
    _same(decode_request(body, json_size)[1]["x"], arr)


def _parse(body: bytes, headers: dict[str, str]) -> httpclient.InferResult:
    length = headers.get(HEADER_LENGTH)
    return httpclient.InferenceServerClient.parse_response_body(
        body, header_length=int(length) if length else None)


@PROFILE
@given(data=st.data(), datatype=st.sampled_from(list(NUMERIC)), binary=st.booleans())
def test_responses_parse_in_tritonclient_to_the_arrays_encoded(data, datatype, binary):
    arr = data.draw(_arrays(datatype))
    body, headers = encode_response("m", "1", {"y": arr}, request_id="r",
                                    parameters=None, binary_outputs=binary)
    result = _parse(body, headers)
    assert result.get_response()["model_version"] == "1"
    _same(result.as_numpy("y"), arr)


@PROFILE
@given(arr=_bytes_arrays(), binary=st.booleans())
def test_bytes_responses_round_trip_binary_or_as_text(arr, binary):
    body, headers = encode_response("m", "1", {"y": arr}, request_id=None, parameters=None,
                                    binary_outputs=binary)
    got = _parse(body, headers).as_numpy("y")
    try:
        text = [b.decode() for b in arr.ravel().tolist()]
    except UnicodeDecodeError:
        text = None  # not UTF-8: sent binary even when JSON was asked for
    if binary or text is None:
        _same(got, arr)
    else:
        assert got.shape == arr.shape and got.ravel().tolist() == text


@PROFILE
@given(data=st.data())
def test_bf16_round_trips_as_binary(data):
    arr = data.draw(hnp.arrays(np.float32, SHAPES, elements=st.floats(
        -1e4, 1e4, width=32))).astype(ml_dtypes.bfloat16)
    body, headers = encode_response("m", None, {"y": arr}, request_id=None, parameters=None,
                                    binary_outputs=False)
    assert headers["Content-Type"] == "application/octet-stream"
    got = _parse(body, headers).as_numpy("y")
    np.testing.assert_array_equal(got.astype(np.float32), arr.astype(np.float32))
    assert JSON_CAPABLE  # FP16 and BF16 are binary-only; the rest may go either way
