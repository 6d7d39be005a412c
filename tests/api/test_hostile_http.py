"""Hostile HTTP clients: slow heads and bodies, idle and excess connections, huge or many
headers, oversize declared bodies, deeply nested JSON. Each case is played against a real
server on 127.0.0.1 with small limits, and afterwards the server must still answer a
health check and an inference on breast_cancer.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest
from helpers import ROOT, make_services, serve

from appliance.access.tls import ClientCertProtocol
from appliance.errors import ConfigError
from appliance.http_limits import FD_HEADROOM, HttpLimits, connection_cap
from appliance.http_protocol import LimitedHttpProtocol
from appliance.services import seed_demo_models
from appliance.settings import load_settings

LIMITS = {"header_timeout_s": 2.0, "body_timeout_s": 1.0, "min_body_rate": 1024,
          "max_connections": 50, "health_connections": 4, "max_header_bytes": 64 * 1024,
          "max_headers": 100}
ROW = [17.99, 10.38, 122.8, 1001.0, 0.1184, 0.2776, 0.3001, 0.1471, 0.2419, 0.07871,
       1.095, 0.9053, 8.589, 153.4, 0.006399, 0.04904, 0.05373, 0.01587, 0.03003, 0.006193,
       25.38, 17.33, 184.6, 2019.0, 0.1622, 0.6656, 0.7119, 0.2654, 0.4601, 0.1189]
INFER = {"inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 30], "data": ROW}]}


@pytest.fixture(scope="module")
def url(tmp_path_factory, ort_plugin_manager_module) -> Iterator[str]:
    services = make_services(tmp_path_factory.mktemp("hostile") / "var",
                             ort_plugin_manager_module, http=LIMITS)
    seed_demo_models(services)
    server = serve(services)
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def ort_plugin_manager_module():
    import appliance_onnxruntime

    from appliance.plugins import get_plugin_manager
    return get_plugin_manager(autoload=False, extra=(appliance_onnxruntime,))


def still_serving(url: str) -> None:
    with httpx.Client(base_url=url, timeout=10) as client:
        assert client.get("/v2/health/live").status_code == 200
        r = client.post("/v2/models/breast_cancer/infer", json=INFER)
        assert r.status_code == 200, r.text


def connect(url: str) -> socket.socket:
    port = int(url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    return sock


def read_all(sock: socket.socket, timeout: float = 10.0) -> bytes:
    """Everything the server sends until it closes (or ``timeout``)."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1]) if response.startswith(b"HTTP/1.1 ") else 0


def test_trickling_request_heads_are_cut_off_with_408(url):
    socks = [connect(url) for _ in range(20)]
    start = time.monotonic()
    head = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    for i in range(12):  # one byte every 0.25 s: never finishes inside 2 s
        for s in socks:
            with contextlib.suppress(OSError):
                s.send(head[i:i + 1])
        time.sleep(0.25)
    answers = [read_all(s) for s in socks]
    elapsed = time.monotonic() - start
    assert all(status_of(a) == 408 for a in answers), answers[:2]
    assert b"did not arrive within 2 s" in answers[0]
    assert elapsed < 6
    for s in socks:
        s.close()
    still_serving(url)


def test_second_request_trickled_on_a_kept_alive_connection_gets_408(url):
    sock = connect(url)
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    first = b""
    while not first.endswith(b'{"live":true}'):
        first += sock.recv(4096)
    assert first.startswith(b"HTTP/1.1 200")
    start = time.monotonic()
    for byte in b"GET /v2/health/live HTTP/1.1\r\nX-Slow: aaaaaaaa":
        try:
            sock.send(bytes([byte]))
        except OSError:
            break
        time.sleep(0.25)
        if time.monotonic() - start > 4:
            break
    answer = read_all(sock)
    assert status_of(answer) == 408
    sock.close()
    still_serving(url)


def test_connection_that_sends_nothing_is_closed_after_the_head_timeout(url):
    sock = connect(url)
    start = time.monotonic()
    assert read_all(sock) == b""
    assert 1.5 < time.monotonic() - start < 5
    sock.close()
    still_serving(url)


def test_slow_request_body_is_cut_off_with_408(url):
    sock = connect(url)
    sock.sendall(b"POST /v2/models/breast_cancer/infer HTTP/1.1\r\nHost: x\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{")
    start = time.monotonic()
    for _ in range(8):  # 4 bytes/s, far under min_body_rate
        try:
            sock.send(b" ")
        except OSError:
            break
        time.sleep(0.25)
    answer = read_all(sock)
    assert status_of(answer) == 408 and b"slower than 1024 bytes/s" in answer
    assert time.monotonic() - start < 5
    sock.close()
    still_serving(url)


def test_connections_past_the_cap_get_503_while_health_keeps_a_reserved_slot(url):
    idle = [connect(url) for _ in range(LIMITS["max_connections"])]
    time.sleep(0.1)  # let the server register them
    try:
        extra = connect(url)
        extra.sendall(b"GET /v2/models/breast_cancer HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = read_all(extra)
        assert status_of(answer) == 503
        assert b"connection limit" in answer and b"retry-after: 1" in answer.lower()
        extra.close()
        with httpx.Client(base_url=url, timeout=5) as client:  # a reserved slot
            assert client.get("/v2/health/live").json() == {"live": True}
        # past the cap and the reserve: an immediate 503, before any request is sent
        reserve = [connect(url) for _ in range(LIMITS["health_connections"])]
        time.sleep(0.1)
        beyond = connect(url)
        assert status_of(read_all(beyond, timeout=5)) == 503
        for s in [*reserve, beyond]:
            s.close()
    finally:
        for s in idle:
            s.close()
    time.sleep(0.2)
    still_serving(url)


def test_idle_connections_at_the_cap_free_their_slots_after_the_head_timeout(url):
    idle = [connect(url) for _ in range(LIMITS["max_connections"] + 10)]
    start = time.monotonic()
    answers = [read_all(s, timeout=5) for s in idle]
    assert time.monotonic() - start < LIMITS["header_timeout_s"] + 2
    assert all(a == b"" or status_of(a) == 503 for a in answers)
    assert sum(a == b"" for a in answers) >= LIMITS["max_connections"]
    for s in idle:
        s.close()
    still_serving(url)


def test_endless_header_line_is_refused_with_431_without_reading_it_all(url):
    sock = connect(url)
    sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Big: ")
    sent = 0
    try:
        while sent < 64 * 1024 * 1024:  # until the answer comes (the server stops early)
            sock.sendall(b"a" * 65536)
            sent += 65536
            if select.select([sock], [], [], 0)[0]:
                break
    except OSError:
        pass
    answer = read_all(sock)
    assert status_of(answer) == 431 and b"request headers over 65536 bytes" in answer
    assert sent < 8 * 1024 * 1024  # the head limit plus what the socket buffers hold
    sock.close()
    still_serving(url)


def test_more_headers_than_the_limit_are_refused_with_431(url):
    many = {f"x-h{i}": "1" for i in range(200)}
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.get("/v2/health/live", headers=many)
        assert r.status_code == 431 and "more than 100 request headers" in r.json()["error"]
        fine = {f"x-h{i}": "1" for i in range(90)}
        assert client.get("/v2/health/live", headers=fine).status_code == 200
    still_serving(url)


def test_body_declared_over_max_body_bytes_is_refused_from_the_header(url):
    for expect in (b"", b"Expect: 100-continue\r\n"):
        sock = connect(url)
        sock.sendall(b"POST /v2/models/breast_cancer/infer HTTP/1.1\r\nHost: x\r\n"
                     b"Content-Type: application/json\r\n" + expect +
                     b"Content-Length: 200000000\r\n\r\n")
        start = time.monotonic()
        answer = read_all(sock)
        assert status_of(answer) == 413, answer
        assert b"200000000 bytes declared" in answer
        assert b"connection: close" in answer.lower()  # the client must not reuse it
        assert time.monotonic() - start < 2.5  # answered at once, not after a body timeout
        sock.close()
    sock = connect(url)  # a litestar route: the same, from litestar's own header check
    sock.sendall(b"POST /v1/consumers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                 b"\r\nContent-Length: 200000000\r\n\r\n")
    answer = read_all(sock, timeout=2.5)
    assert status_of(answer) == 413 and b"request body too large" in answer
    sock.close()
    still_serving(url)


def test_deeply_nested_json_on_an_admin_route_is_a_400(url):
    deep = '{"name": "c", "model": ' + "[" * 5000 + "]" * 5000 + "}"
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/v1/consumers", content=deep,
                        headers={"content-type": "application/json"})
        assert r.status_code == 400 and "nested too deeply" in r.json()["error"]
        r = client.post("/v1/models/breast_cancer/rollback", content="[" * 3000,
                        headers={"content-type": "application/json"})
        assert r.status_code == 400, r.text
    still_serving(url)


def test_post_without_a_body_says_it_needs_a_json_body(url):
    with httpx.Client(base_url=url, timeout=10) as client:
        r = client.post("/v1/consumers")
        assert r.status_code == 400
        assert r.json()["error"].startswith("the request needs a JSON body: POST /v1/consumers")
        r = client.post("/v1/consumers", json=[1])
        assert r.status_code == 400 and "Expected `object`, got `array`" in r.json()["error"]
    still_serving(url)


def test_options_on_a_version_path_allows_delete(url):
    r = httpx.options(url + "/v1/models/breast_cancer/versions/1")
    assert r.status_code == 204
    assert r.headers["allow"] == "DELETE, GET, OPTIONS"


def test_http_limits_are_settings_with_checked_values(tmp_path):
    config = tmp_path / "appliance.toml"
    config.write_text("[http]\nmax_connections = 10\nheader_timeout_s = 3\n")
    settings = load_settings(config=config, environ={})
    assert settings.http.max_connections == 10 and settings.http.header_timeout_s == 3.0
    config.write_text("[http]\nmax_headers = 0\n")
    with pytest.raises(ConfigError, match="max_headers"):
        load_settings(config=config, environ={})


def test_connection_cap_fits_under_the_descriptor_limit():
    limits = HttpLimits(max_connections=1000, health_connections=16)
    assert connection_cap(limits, nofile=65536) == 1000
    assert connection_cap(limits, nofile=1024) == 1024 - FD_HEADROOM - 16
    with pytest.raises(ConfigError, match="LimitNOFILE"):
        connection_cap(limits, nofile=50)


def test_tls_protocol_enforces_the_same_limits():
    bound = ClientCertProtocol.with_limits(HttpLimits(max_headers=7), nofile=4096)
    assert issubclass(bound, LimitedHttpProtocol) and issubclass(bound, ClientCertProtocol)
    assert bound.limits.max_headers == 7 and bound.cap == 1000


def _lowered_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))


def test_serve_under_a_low_descriptor_limit_keeps_health_answering(tmp_path):
    """`appliance serve` with RLIMIT_NOFILE 256: the cap drops to fit, connections past it
    get a 503 instead of a reset, and health answers within 1 s through the reserve."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    config = tmp_path / "appliance.toml"
    config.write_text("signing_policy = {}\n[http]\nheader_timeout_s = 30\n")
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(tmp_path / "var"),
           "APPLIANCE_CONFIG": str(config)}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)  # the backends are plugins
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "serve", "--port",
                                 str(port)], env=env, stderr=log, preexec_fn=_lowered_nofile)
    base = f"http://127.0.0.1:{port}"
    held: list[socket.socket] = []
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if httpx.get(base + "/v2/health/ready").status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server not ready in 60 s"
            time.sleep(0.1)
        cap = 256 - FD_HEADROOM - 16
        assert f"at most {cap} connections" in log_path.read_text()
        held = [connect(base) for _ in range(cap + 8)]  # the cap and half the reserve
        time.sleep(0.2)
        start = time.monotonic()
        assert httpx.get(base + "/v2/health/live", timeout=5).status_code == 200
        assert time.monotonic() - start < 1.0
        refused = httpx.get(base + "/v2/models/breast_cancer", timeout=5)
        assert refused.status_code == 503 and "connection limit" in refused.json()["error"]
        for s in held:
            s.close()
        held = []
        time.sleep(0.3)
        still_serving(base)
        assert "connection cap reached" in log_path.read_text()
    finally:
        for s in held:
            s.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


def test_api_docs_name_every_http_setting():
    readme = (ROOT / "docs" / "api.md").read_text()
    for field in HttpLimits.__struct_fields__:
        assert field in readme, f"docs/api.md does not document [http] {field}"
