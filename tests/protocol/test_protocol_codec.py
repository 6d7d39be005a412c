"""Open Inference Protocol codecs: JSON, binary extension, raw binary, tritonclient interop."""

from __future__ import annotations

import importlib
import struct
from typing import Any

import msgspec
import numpy as np
import pytest

from appliance.errors import BadRequest
from appliance.protocol import (
    HEADER_LENGTH,
    InferenceRequest,
    RequestOutput,
    decode_raw_binary,
    decode_request,
    encode_response,
    requested_outputs,
)
from appliance.signature import TensorSpec

NUMERIC = {
    "BOOL": np.array([[True, False, True], [False, False, True]]),
    "UINT8": np.array([[0, 7, 255], [1, 2, 3]], np.uint8),
    "UINT16": np.array([[0, 65535, 3], [1, 2, 3]], np.uint16),
    "UINT32": np.array([[0, 2**32 - 1, 3], [1, 2, 3]], np.uint32),
    "UINT64": np.array([[0, 2**64 - 1, 3], [1, 2, 3]], np.uint64),
    "INT8": np.array([[-128, 127, 0], [1, -2, 3]], np.int8),
    "INT16": np.array([[-(2**15), 2**15 - 1, 0], [1, -2, 3]], np.int16),
    "INT32": np.array([[-(2**31), 2**31 - 1, 0], [1, -2, 3]], np.int32),
    "INT64": np.array([[-(2**63), 2**63 - 1, 0], [1, -2, 3]], np.int64),
    "FP32": np.array([[0.1, -2.5, 3e38], [1e-30, 0.0, 7.0]], np.float32),
    "FP64": np.array([[0.1, -2.5, 1e300], [1e-300, 0.0, 7.0]], np.float64),
}
try:  # BF16 needs ml_dtypes (a tritonclient dependency)
    import ml_dtypes

    BF16 = {"BF16": np.array([[0.1, -2.5, 3e38], [1, 0, 7]], ml_dtypes.bfloat16)}
except ImportError:  # pragma: no cover
    BF16 = {}
BINARY_ONLY = {"FP16": np.array([[0.1, -2.5, 65504], [1, 0, 7]], np.float16), **BF16}
WORDS = np.array([[b"hi", "h\u00e9llo".encode(), b""], [b"a b", b"\xe2\x82\xac", b"z"]], object)
ALL = {**NUMERIC, **BINARY_ONLY, "BYTES": WORDS}


def json_body(*inputs: dict[str, Any], **extra: Any) -> bytes:
    return msgspec.json.encode({"inputs": list(inputs), **extra})


def binary_body(inputs: list[dict[str, Any]], *chunks: bytes) -> tuple[bytes, int]:
    header = msgspec.json.encode({"inputs": inputs})
    return header + b"".join(chunks), len(header)


def wire(arr: np.ndarray) -> bytes:
    if arr.dtype == object:
        return b"".join(struct.pack("<I", len(x)) + x for x in arr.ravel())
    return arr.astype(arr.dtype.newbyteorder("<")).tobytes()


def json_data(arr: np.ndarray) -> list[Any]:
    return [x.decode() for x in arr.ravel()] if arr.dtype == object else arr.ravel().tolist()


def equal(a: np.ndarray, b: np.ndarray) -> None:
    assert a.shape == b.shape
    if a.dtype == object or b.dtype == object:
        assert a.tolist() == b.tolist()
    else:
        assert a.dtype == b.dtype
        np.testing.assert_array_equal(a.astype(np.float64), b.astype(np.float64))


def bad(body: bytes, header_length: int | None, *needles: str) -> str:
    with pytest.raises(BadRequest) as info:
        decode_request(body, header_length)
    for needle in needles:
        assert needle in info.value.message, info.value.message
    return info.value.message


@pytest.mark.parametrize("datatype", [*NUMERIC, "BYTES"])
def test_json_round_trip(datatype: str) -> None:
    arr = ALL[datatype]
    item = {"name": "x", "shape": [2, 3], "datatype": datatype, "data": json_data(arr)}
    request, arrays = decode_request(json_body(item, id="r1"), None)
    assert request.id == "r1" and list(arrays) == ["x"]
    equal(arrays["x"], arr)
    body, headers = encode_response(
        "m", None, arrays, request_id="r1", parameters=None, binary_outputs=False
    )
    assert headers == {"Content-Type": "application/json"}
    out = msgspec.json.decode(body)["outputs"][0]
    assert out == {"name": "x", "datatype": datatype, "shape": [2, 3], "data": item["data"]}


@pytest.mark.parametrize("datatype", list(ALL))
def test_binary_round_trip(datatype: str) -> None:
    arr = ALL[datatype]
    raw = wire(arr)
    meta = {
        "name": "x",
        "shape": [2, 3],
        "datatype": datatype,
        "parameters": {"binary_data_size": len(raw)},
    }
    body, length = binary_body([meta], raw)
    _, arrays = decode_request(body, length)
    equal(arrays["x"], arr)
    body, headers = encode_response(
        "m", "2", arrays, request_id=None, parameters={"k": 1}, binary_outputs=True
    )
    length = int(headers[HEADER_LENGTH])
    assert headers["Content-Type"] == "application/octet-stream"
    doc = msgspec.json.decode(body[:length])
    assert doc["model_version"] == "2" and doc["parameters"] == {"k": 1} and "id" not in doc
    assert doc["outputs"][0]["parameters"] == {"binary_data_size": len(raw)}
    assert body[length:] == raw


def test_binary_arrays_are_zero_copy_views() -> None:
    raw = np.arange(4, dtype=np.float32).tobytes()
    body, length = binary_body(
        [{"name": "x", "shape": [4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}],
        raw,
    )
    arr = decode_request(body, length)[1]["x"]
    assert not arr.flags.writeable and np.shares_memory(arr, np.frombuffer(body, np.uint8))


def test_nested_equals_flat_and_mixed_inputs() -> None:
    nested = {"name": "a", "shape": [2, 2], "datatype": "INT32", "data": [[1, 2], [3, 4]]}
    flat = {"name": "b", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4]}
    raw = wire(np.array([1.5], np.float16))
    binary = {"name": "c", "shape": [1], "datatype": "FP16", "parameters": {"binary_data_size": 2}}
    body, length = binary_body([nested, binary, flat], raw)
    _, arrays = decode_request(body, length)
    assert list(arrays) == ["a", "c", "b"]
    equal(arrays["a"], arrays["b"])
    assert arrays["c"].tolist() == [1.5]


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        ([[1, 2, 3], [4, 5, 6]], "nested data has shape [2, 3] but the input's shape is [3, 2]"),
        ([[1, 2], [3, 4], [5]], "not rectangular"),
        ([1, 2, 3, 4, 5], "input 'x' has shape [3, 2], so it needs 6 elements, but data has 5"),
        ("abc", "'data' must be a JSON array"),
    ],
)
def test_json_data_shape_errors(data: Any, needle: str) -> None:
    bad(json_body({"name": "x", "shape": [3, 2], "datatype": "INT64", "data": data}), None, needle)


@pytest.mark.parametrize(
    ("datatype", "data", "needle"),
    [
        ("UINT8", [1, 300], "<= 255 - at `$.inputs[0].data[1]`"),
        ("UINT32", [-1], ">= 0"),
        ("UINT64", [2**64], "out of range for UINT64"),
        ("INT64", [2**63], "<= 9223372036854775807"),
        ("INT8", [[1], [-129]], ">= -128 - at `$.inputs[0].data[1][0]`"),
        ("INT32", [1.5], "Expected `int`, got `float`"),
        ("FP32", [1e39], "out of range for FP32"),
        ("FP32", [True], "Expected `float`, got `bool`"),
        ("FP64", ["1.0"], "Expected `float`, got `str`"),
        ("BOOL", [1], "Expected `bool`, got `int`"),
        ("BYTES", [1], "Expected `str`, got `int`"),
    ],
)
def test_json_element_errors(datatype: str, data: list[Any], needle: str) -> None:
    shape = [len(data), 1] if isinstance(data[0], list) else [len(data)]
    bad(
        json_body({"name": "x", "shape": shape, "datatype": datatype, "data": data}),
        None,
        f"input 'x' ({datatype})" if "range" not in needle else "input 'x'",
        needle,
    )


@pytest.mark.parametrize("datatype", ["FP16", "BF16"])
def test_half_precision_as_json_is_rejected(datatype: str) -> None:
    body = json_body({"name": "x", "shape": [1], "datatype": datatype, "data": [1.0]})
    bad(body, None, f"input 'x' is {datatype}", "binary tensor extension")


def test_request_structure_errors() -> None:
    bad(b'{"inputs": [', None, "not valid JSON")
    bad(b"{}", None, "missing required field `inputs`")
    bad(
        b'{"inputs": [{"name": "x", "shape": "3", "datatype": "FP32", "data": []}]}',
        None,
        "$.inputs[0].shape",
    )
    bad(
        json_body({"name": "x", "shape": [1], "datatype": "FLOAT", "data": [1]}),
        None,
        "unknown datatype 'FLOAT'",
        "FP32",
        "BYTES",
        "BF16",
    )
    bad(
        json_body({"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}),
        None,
        "must not be negative",
    )
    bad(json_body({"name": "x", "shape": [1], "datatype": "FP32"}), None, "has no data")
    item = {"name": "x", "shape": [1], "datatype": "FP32", "data": [1]}
    bad(json_body(item, item), None, "more than once")
    both = {**item, "parameters": {"binary_data_size": 4}}
    bad(*binary_body([both], b"\0" * 4), "both 'data' and parameters.binary_data_size")


def test_binary_size_errors() -> None:
    meta = [{"name": "x", "shape": [3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]
    body, length = binary_body(meta, b"\0" * 12)
    bad(body[:-1], length, "shorter than declared", "11 bytes present", "totals 12")
    bad(body + b"\0", length, "longer than declared", "13 bytes present")
    bad(body, len(body) + 1, f"{HEADER_LENGTH} is {len(body) + 1}", f"only {len(body)} bytes")
    bad(body, None, f"send the header Inference-Header-Content-Length: {length}")
    bad(body[:length], None, "no Inference-Header-Content-Length header")
    bad(body, 0, "raw binary")
    bad(body, -5, "positive")
    meta[0]["parameters"] = {"binary_data_size": 8}
    bad(*binary_body(meta, b"\0" * 8), "must be 12 bytes (3 elements x 4)", "is 8")
    meta[0]["parameters"] = {"binary_data_size": "12"}
    bad(*binary_body(meta, b"\0" * 12), "non-negative integer")
    flags = [{"name": "b", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}]
    bad(*binary_body(flags, b"\x01\x02"), "0 or 1")


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        (struct.pack("<I", 5) + b"abcd", "element 0 has length prefix 5 but only 4"),
        (struct.pack("<I", 1) + b"a" + b"\x02\0", "declares 2 elements, but its 7 bytes"),
        (struct.pack("<I", 1) + b"a" + b"\x02\0\0", "end before element 1's 4-byte length prefix"),
        (struct.pack("<I", 1) + b"a" + struct.pack("<I", 0) + b"zz", "2 bytes left over"),
    ],
)
def test_bytes_bad_length_prefix(raw: bytes, needle: str) -> None:
    meta = {
        "name": "s",
        "shape": [2],
        "datatype": "BYTES",
        "parameters": {"binary_data_size": len(raw)},
    }
    bad(*binary_body([meta], raw), "BYTES input 's'", needle)


def test_raw_binary() -> None:
    arr = np.arange(6, dtype=np.float32)
    equal(decode_raw_binary(arr.tobytes(), TensorSpec("x", "FP32", (-1, 3))), arr.reshape(2, 3))
    equal(decode_raw_binary(arr.tobytes(), TensorSpec("x", "FP32", (6,))), arr)
    out = decode_raw_binary(b"\x00jpeg", TensorSpec("img", "BYTES", (-1,)))
    assert out.shape == (1,) and out[0] == b"\x00jpeg"
    for spec, needle in [
        (TensorSpec("x", "FP32", (-1, 4)), "do not fit"),
        (TensorSpec("x", "FP32", (5,)), "do not fit"),
        (TensorSpec("x", "FP32", (-1, -1)), "more than one variable"),
        (TensorSpec("x", "FP64", (-1,)), "not a whole number"),
    ]:
        with pytest.raises(BadRequest, match=needle):
            decode_raw_binary(
                arr.tobytes()[:20] if spec.datatype == "FP64" else arr.tobytes(), spec
            )


def test_requested_outputs() -> None:
    assert requested_outputs(InferenceRequest(inputs=[])) == (None, False)
    assert requested_outputs(
        InferenceRequest(inputs=[], parameters={"binary_data_output": True})
    ) == (None, True)
    outs = [
        RequestOutput("a"),
        RequestOutput("b", {"binary_data": False}),
        RequestOutput("c", {"binary_data": True}),
    ]
    assert requested_outputs(InferenceRequest(inputs=[], outputs=outs)) == (["a", "b", "c"], {"c"})
    both = InferenceRequest(inputs=[], outputs=outs, parameters={"binary_data_output": True})
    assert requested_outputs(both) == (["a", "b", "c"], {"a", "c"})
    with pytest.raises(BadRequest, match="true or false"):
        requested_outputs(
            InferenceRequest(inputs=[], outputs=[RequestOutput("a", {"binary_data": 1})])
        )


def test_json_impossible_outputs_are_sent_binary() -> None:
    outputs = {
        "h": np.ones(2, np.float16),
        "f": np.ones(2, np.float32),
        "s": np.array([b"\xff\xfe", b"ok"], object),
    }
    body, headers = encode_response(
        "m", None, outputs, request_id=None, parameters=None, binary_outputs=set()
    )
    doc = msgspec.json.decode(body[: int(headers[HEADER_LENGTH])])
    kinds = {o["name"]: "data" in o for o in doc["outputs"]}
    assert kinds == {"h": False, "f": True, "s": False}


# --- interoperability with the real tritonclient library (no server involved) ---


@pytest.fixture(scope="module")
def httpclient() -> Any:
    return importlib.import_module("tritonclient.http")


INTEROP = {
    "FP32": ALL["FP32"],
    "INT64": ALL["INT64"],
    "BOOL": ALL["BOOL"],
    "BYTES": WORDS,
    **BINARY_ONLY,
}


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_request_decodes(httpclient: Any, binary: bool) -> None:
    inputs = []
    for datatype, arr in INTEROP.items():
        if not binary and datatype in ("FP16", "BF16"):
            continue
        inputs.append(httpclient.InferInput(datatype, list(arr.shape), datatype))
        inputs[-1].set_data_from_numpy(arr, binary_data=binary)
    outputs = [
        httpclient.InferRequestedOutput("FP32", binary_data=True),
        httpclient.InferRequestedOutput("BYTES", binary_data=False),
    ]
    body, length = httpclient.InferenceServerClient.generate_request_body(
        inputs, outputs=outputs, request_id="abc"
    )
    assert (length is None) is (not binary)
    request, arrays = decode_request(body, length)
    assert request.id == "abc" and list(arrays) == [i.name() for i in inputs]
    for name, arr in arrays.items():
        equal(arr, INTEROP[name])
    assert requested_outputs(request) == (["FP32", "BYTES"], {"FP32"})


def test_tritonclient_fp16_as_json_is_rejected(httpclient: Any) -> None:
    item = httpclient.InferInput("h", [2, 3], "FP16").set_data_from_numpy(ALL["FP16"], False)
    body, length = httpclient.InferenceServerClient.generate_request_body([item])
    bad(body, length, "input 'h' is FP16", "binary")


@pytest.mark.parametrize("binary", [True, False])
def test_tritonclient_parses_response(httpclient: Any, binary: bool) -> None:
    body, headers = encode_response(
        "m", "1", dict(INTEROP), request_id="abc", parameters=None, binary_outputs=binary
    )
    length = headers.get(HEADER_LENGTH)
    result = httpclient.InferenceServerClient.parse_response_body(
        body, verbose=False, header_length=None if length is None else int(length)
    )
    assert result.get_response()["id"] == "abc"
    for name, arr in INTEROP.items():
        got = result.as_numpy(name)
        if name == "BYTES" and not binary:  # JSON BYTES come back as str
            got = np.array([x.encode() for x in got.ravel()], object).reshape(got.shape)
        equal(got, arr)


def test_strided_and_big_endian_outputs_are_sent_row_major_little_endian() -> None:
    arr = np.arange(6, dtype=">i4").reshape(2, 3).T
    body, headers = encode_response(
        "m", None, {"t": arr}, request_id=None, parameters=None, binary_outputs=True
    )
    length = int(headers[HEADER_LENGTH])
    assert body[length:] == np.ascontiguousarray(arr, dtype="<i4").tobytes()
    body, _ = encode_response(
        "m", None, {"t": arr}, request_id=None, parameters=None, binary_outputs=False
    )
    assert msgspec.json.decode(body)["outputs"][0]["data"] == [0, 3, 1, 4, 2, 5]
