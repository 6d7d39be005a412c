"""Micro-benchmark of the Open Inference Protocol codecs (not a test).

Times ``decode_request`` and ``encode_response`` for a 1x3x224x224 FP32 image tensor and
a 1x30 FP32 tabular row, each sent as JSON and as binary (the binary tensor extension),
the output echoing the input in the same form. Prints the median of N runs in ms.

    .venv/bin/python benchmarks/codec_micro.py [N]
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable

import msgspec
import numpy as np

from appliance.protocol import HEADER_LENGTH, decode_request, encode_response


def request_body(arr: np.ndarray, binary: bool) -> tuple[bytes, int | None]:
    item = {"name": "x", "shape": list(arr.shape), "datatype": "FP32"}
    if not binary:
        return msgspec.json.encode({"inputs": [{**item, "data": arr.ravel().tolist()}]}), None
    raw = arr.tobytes()
    header = msgspec.json.encode(
        {"inputs": [{**item, "parameters": {"binary_data_size": len(raw)}}]}
    )
    return header + raw, len(header)


def median_ms(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def main(runs: int = 50) -> None:
    rng = np.random.default_rng(0)
    cases = {
        "image 1x3x224x224": rng.random((1, 3, 224, 224), dtype=np.float32),
        "tabular 1x30": rng.random((1, 30), dtype=np.float32),
    }
    print(
        f"{'case':<20} {'form':<7} {'body KiB':>9} {'decode ms':>10} "
        f"{'encode ms':>10} {'total ms':>9}"
    )
    for label, arr in cases.items():
        for binary in (False, True):
            body, length = request_body(arr, binary)
            _, arrays = decode_request(body, length)

            def encode(
                arrays: dict[str, np.ndarray] = arrays, binary: bool = binary
            ) -> tuple[bytes, dict[str, str]]:
                return encode_response(
                    "m", "1", arrays, request_id=None, parameters=None, binary_outputs=binary
                )

            out, headers = encode()
            assert (HEADER_LENGTH in headers) is binary

            def decode(body: bytes = body, length: int | None = length) -> object:
                return decode_request(body, length)

            dec = median_ms(decode, runs)
            enc = median_ms(encode, runs)
            form = "binary" if binary else "JSON"
            print(
                f"{label:<20} {form:<7} {len(body) / 1024:>9.1f} {dec:>10.3f} {enc:>10.3f} "
                f"{dec + enc:>9.3f}"
            )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
