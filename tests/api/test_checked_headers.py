"""The inference front's response heads take the protocol's checked-headers path
(appliance/http_protocol.py ``CHECKED_HEADERS``): the bytes on the wire must be what
uvicorn's own path would write — status line, uvicorn's default headers, ours, keep-alive
and ``connection: close`` handled the same."""

from __future__ import annotations

import json
import socket

from helpers import make_services, serve
from helpers.models import scale_model

from appliance.packages.importer import import_model

BODY = json.dumps({"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP32",
                               "data": [1, 2]}]}).encode()


def request(path: str, version: str = "1.1", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/{version}\r\nHost: t\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(BODY)}\r\n{extra}\r\n").encode() + BODY


def read_answer(sock: socket.socket, buffer: bytearray) -> tuple[str, dict[str, str], bytes]:
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before the head"
        buffer += chunk
    head, _, rest = bytes(buffer).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        assert name == name.lower() and name not in headers, line
        headers[name] = value
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk
        rest += chunk
    buffer[:] = rest[length:]
    return lines[0], headers, rest[:length]


def test_inference_heads_match_uvicorns_and_keep_alive_holds(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "m.onnx", 2),
                 name="m")
    server = serve(services)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            buffer = bytearray()
            sock.sendall(request("/v2/models/m/infer", extra="X-Request-Id: abc\r\n") * 2)
            for _ in range(2):  # both answered on the one connection
                status, headers, body = read_answer(sock, buffer)
                assert status == "HTTP/1.1 200 OK"
                assert {"date", "server", "content-type", "content-length", "x-request-id",
                        "server-timing"} <= set(headers)
                assert headers["x-request-id"] == "abc" and "connection" not in headers
                assert json.loads(body)["outputs"][0]["data"] == [2.0, 4.0]
            # an error answer takes the same path
            sock.sendall(request("/v2/models/nope/infer"))
            status, headers, body = read_answer(sock, buffer)
            assert status == "HTTP/1.1 404 Not Found" and "error" in json.loads(body)
        with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
            sock.sendall(request("/v2/models/m/infer", version="1.0"))
            status, headers, _ = read_answer(sock, bytearray())
            assert status == "HTTP/1.1 200 OK" and headers["connection"] == "close"
            assert sock.recv(1) == b""  # and it is closed
    finally:
        server.stop()
