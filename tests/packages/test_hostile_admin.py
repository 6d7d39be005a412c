"""Hostile callers of the admin side: spoofed actors, SSRF webhooks, slow webhooks, tar
bombs and full disks. After each case the server still answers a normal request.

Real servers on 127.0.0.1, real tokens, real sockets, real archives, a real CLI process.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import appliance_onnxruntime
import httpx
import pytest
from helpers import make_services, serve
from helpers.models import scale_model
from test_packages import big_model, make_package, manifest_dict

from appliance.cli.tokens import mint_token
from appliance.errors import BadRequest, InsufficientStorage
from appliance.lifecycle.settings import WebhookSettings
from appliance.lifecycle.webhooks import check_destination, outbox
from appliance.packages import build_package, push_package, safe_extract
from appliance.packages.importer import import_model
from appliance.packages.manifest import toml_text
from appliance.plugins import get_plugin_manager
from appliance.registry import Registry
from appliance.registry.diskspace import free_bytes, is_disk_full, storage_error

BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 2]}]}
FAST = 1.0  # seconds: an admin request slower than this was held up


def _pm() -> Any:
    return get_plugin_manager(autoload=False, extra=(appliance_onnxruntime,))


def start_box(root: Path, **settings: Any) -> SimpleNamespace:
    services = make_services(root / "var", _pm(), **settings)
    import_model(services.registry, services.catalog, scale_model(root / "m.onnx", 2.0),
                 name="m")
    server = serve(services)
    return SimpleNamespace(url=server.url, server=server, data=root / "var",
                           catalog=services.catalog)


def token(box: SimpleNamespace, subject: str = "ops-bot") -> dict[str, str]:
    minted, _ = mint_token(box.data, issuer="appliance-local", audience="appliance",
                           subject=subject, scopes=["models:write", "models:read",
                                                    "models:infer"], roles=[], ttl_s=600)
    return {"Authorization": f"Bearer {minted}"}


def assert_still_serving(box: SimpleNamespace, headers: dict[str, str] | None = None) -> None:
    assert httpx.get(f"{box.url}/v2/health/ready", timeout=10).status_code == 200
    r = httpx.post(f"{box.url}/v2/models/m/infer", json=BODY, headers=headers, timeout=10)
    assert r.status_code == 200, r.text
    assert r.json()["outputs"][0]["data"] == [2.0, 4.0]


@pytest.fixture(scope="module")
def box(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """Auth on, no webhook allowlist."""
    found = start_box(tmp_path_factory.mktemp("box"), auth={"mode": "on"})
    yield found
    found.server.stop()


@pytest.fixture(scope="module")
def allowing(tmp_path_factory) -> Iterator[SimpleNamespace]:
    """Auth off; 127.0.0.1 allowed as a webhook destination; one delivery at a time."""
    found = start_box(tmp_path_factory.mktemp("allowing"), lifecycle={"webhooks": {
        "allow": ["127.0.0.1"], "timeout_s": 1.5, "backoff_s": 0.5, "max_attempts": 2,
        "concurrency": 1}})
    yield found
    found.server.stop()


def wait_for(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(0.05)
    raise AssertionError("timed out waiting")


def outbox_rows(box: SimpleNamespace) -> list[dict[str, Any]]:
    registry = Registry(box.data)
    try:
        return outbox(registry.db)
    finally:
        registry.close()


# -- actors come from the token ---------------------------------------------------------

def test_write_routes_record_the_token_subject_and_refuse_naming_another(box):
    auth, base = token(box), f"{box.url}/v1/models/m/versions/1"
    r = httpx.post(f"{base}/hold", json={"holder": "legal-dept", "reason": "case 9",
                                         "placed_by": "approver-2"}, headers=auth)
    assert r.status_code == 403 and "ops-bot may not act as 'approver-2'" in r.json()["error"]
    r = httpx.post(f"{base}/hold", json={"holder": "legal-dept", "reason": "case 9"},
                   headers=auth)
    assert r.status_code == 200, r.text
    assert (r.json()["holder"], r.json()["placed_by"]) == ("legal-dept", "ops-bot")
    r = httpx.post(f"{base}/release", json={"by": "legal-dept"}, headers=auth)
    assert r.status_code == 403
    r = httpx.post(f"{base}/release", json={}, headers=auth)
    assert r.status_code == 200 and r.json()[0]["released_by"] == "ops-bot"
    r = httpx.post(f"{base}/deprecate", json={"deprecation_date": "2026-12-01",
                                              "actor": "approver-2"}, headers=auth)
    assert r.status_code == 403
    r = httpx.post(f"{base}/deprecate", json={"deprecation_date": "2026-12-01"}, headers=auth)
    assert r.status_code == 200 and r.json()["actor"] == "ops-bot"
    registry = Registry(box.data)
    try:
        spare = import_model(registry, box.catalog, scale_model(box.data.parent / "s.onnx", 5.0),
                             name="m").version
        gone = f"{box.url}/v1/models/m/versions/{spare}"
        r = httpx.delete(gone, params={"actor": "approver-2", "reason": "x"}, headers=auth)
        assert r.status_code == 403
        r = httpx.delete(gone, params={"reason": "cleanup"}, headers=auth)
        assert r.status_code == 200 and r.json()["actor"] == "ops-bot"
        actors = {a for (a,) in registry.db.execute(
            "SELECT actor FROM events WHERE action IN ('hold', 'release', 'deprecate', "
            "'delete')")}
        placed = registry.db.execute("SELECT holder, placed_by FROM holds").fetchall()
    finally:
        registry.close()
    assert actors == {"ops-bot"} and placed == [("legal-dept", "ops-bot")]
    assert_still_serving(box, auth)


# -- webhook destinations ---------------------------------------------------------------

@pytest.mark.parametrize("url", [
    "http://127.0.0.1:9/hook", "http://localhost:9/hook", "http://[::1]:9/hook",
    "http://169.254.169.254/latest/meta-data/", "http://10.1.2.3/hook",
    "http://192.168.0.10/hook", "http://[::ffff:127.0.0.1]/hook", "http://0.0.0.0/hook",
    "ftp://hooks.example.com/x"])
def test_registering_a_private_or_loopback_webhook_is_400(box, url):
    r = httpx.post(f"{box.url}/v1/consumers", headers=token(box), json={
        "name": "intruder", "model": "m", "reads": ["y"], "contact": "x@example.com",
        "webhook": url})
    assert r.status_code == 400, r.text
    error = r.json()["error"]
    assert "lifecycle.webhooks.allow" in error or "not an http(s) URL" in error
    assert_still_serving(box, token(box))


def test_allowlisted_network_is_accepted_and_others_still_refused():
    settings = WebhookSettings(allow=["10.20.0.0/16", "127.0.0.1"])
    assert [str(ip) for ip in check_destination("http://10.20.3.4/x", settings)] == [
        "10.20.3.4"]
    assert check_destination("http://127.0.0.1:8080/x", settings)
    with pytest.raises(BadRequest, match="10.21.0.1 is a private address"):
        check_destination("http://10.21.0.1/x", settings)


def test_a_webhook_that_resolves_to_loopback_is_refused_at_send_time(box):
    hook = Listener()
    try:  # registered before this release checked destinations (or before a config change)
        registry = Registry(box.data)
        try:
            registry.db.execute(
                "INSERT INTO consumers (name, model, reads, contact, webhook, created_at) "
                "VALUES ('legacy', 'm', '[\"y\"]', 'l@example.com', ?, '2026-01-01')",
                [f"http://localhost:{hook.port}/hook"])
        finally:
            registry.close()
        r = httpx.post(f"{box.url}/v1/models/m/versions/1/deprecate", headers=token(box),
                       json={"deprecation_date": "2026-12-02"})
        assert r.status_code == 200, r.text
        row = wait_for(lambda: [o for o in outbox_rows(box)
                                if o["consumer"] == "legacy" and o["status"] == "failed"])[0]
        assert row["attempts"] == 1 and row["last_error"].startswith("not sent:")
        assert "localhost resolves to" in row["last_error"] and "loopback" in row["last_error"]
        assert hook.received == []
    finally:
        hook.close()
    assert_still_serving(box, token(box))


# -- webhook deliveries are off the request path -----------------------------------------

class Listener:
    """A real HTTP endpoint on 127.0.0.1 that records what it is sent."""

    def __init__(self) -> None:
        received: list[dict[str, Any]] = []

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.received = received
        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_port
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Silent:
    """A socket that accepts connections and never answers."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                self.held.append(self.sock.accept()[0])
            except OSError:
                return

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


def test_silent_webhooks_do_not_slow_admin_requests_and_others_still_get_theirs(allowing):
    silent, working = [Silent(), Silent()], Listener()
    try:
        for name, port in [("s1", silent[0].port), ("s2", silent[1].port),
                           ("ok", working.port)]:
            r = httpx.post(f"{allowing.url}/v1/consumers", json={
                "name": name, "model": "m", "reads": ["y"], "contact": f"{name}@example.com",
                "webhook": f"http://127.0.0.1:{port}/hook"})
            assert r.status_code == 200, r.text
        started = time.monotonic()
        r = httpx.post(f"{allowing.url}/v1/models/m/versions/1/deprecate",
                       json={"deprecation_date": "2026-12-01", "actor": "ops"}, timeout=30)
        assert r.status_code == 200 and time.monotonic() - started < FAST
        slowest, deadline = 0.0, time.monotonic() + 20
        while not working.received:  # the silent ones are being tried meanwhile
            started = time.monotonic()
            assert httpx.get(f"{allowing.url}/v1/models", timeout=30).status_code == 200
            slowest = max(slowest, time.monotonic() - started)
            assert time.monotonic() < deadline, "the working webhook never got its POST"
            time.sleep(0.1)
        assert slowest < FAST
        assert working.received[0]["consumer"] == "ok" and working.received[0]["version"] == "1"
        def given_up() -> list[dict[str, Any]] | None:
            rows = [o for o in outbox_rows(allowing)
                    if o["consumer"] in ("s1", "s2") and o["status"] == "failed"]
            return rows if len(rows) == 2 else None

        for row in wait_for(given_up):
            assert row["attempts"] == 2
            assert row["last_error"].startswith("gave up after 2 attempt(s): ReadTimeout")
    finally:
        working.close()
        for s in silent:
            s.close()
    assert_still_serving(allowing)


# -- package archives --------------------------------------------------------------------

def _bytes_under(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _tar_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("compress", [gzip.compress, bz2.compress])
def test_compressed_package_is_refused_before_anything_is_written(box, tmp_path, compress):
    bomb = tmp_path / "bomb.tar"  # 64 MiB of zeros in a few kilobytes
    bomb.write_bytes(compress(_tar_bytes([("model.toml", b'name = "x"\n'),
                                          ("fp32/model.onnx", bytes(64 << 20))])))
    assert bomb.stat().st_size < 100_000
    dest = tmp_path / "dest"
    dest.mkdir()
    with pytest.raises(BadRequest, match="compressed: a package is a plain, uncompressed tar"):
        safe_extract(bomb, dest)
    assert _bytes_under(dest) == 0
    assert_still_serving(box, token(box))


def test_members_beyond_what_the_manifest_declares_are_refused_before_writing(box, tmp_path):
    src = make_package(tmp_path / "src")
    build_package(src, tmp_path / "good.tar")
    with tarfile.open(tmp_path / "good.tar") as tar:
        manifest = tar.extractfile("model.toml").read()  # type: ignore[union-attr]
    cases = {"bigger than declared": [("model.toml", manifest),
                                      ("fp32/model.onnx", bytes(4 << 20))],
             "not listed": [("model.toml", manifest), ("extra.bin", bytes(4 << 20))]}
    for why, members in cases.items():
        pkg = tmp_path / f"{why}.tar"
        pkg.write_bytes(_tar_bytes(members))
        dest = tmp_path / why
        dest.mkdir()
        with pytest.raises(BadRequest, match="declares|is not listed in model.toml"):
            safe_extract(pkg, dest)
        assert _bytes_under(dest) == 0, why
    lying = tarfile.TarInfo("fp32/model.onnx")  # a header claiming 1 TiB, 10 bytes of data
    lying.size = 1 << 40
    (tmp_path / "lying.tar").write_bytes(lying.tobuf(tarfile.GNU_FORMAT) + bytes(10))
    with pytest.raises(BadRequest, match="more than the archive holds"):
        safe_extract(tmp_path / "lying.tar", tmp_path / "lying")
    assert_still_serving(box, token(box))


def test_push_that_would_eat_the_free_space_reserve_is_507(box, tmp_path):
    src = make_package(tmp_path / "src", manifest_dict(name="reserve"))
    build_package(src, tmp_path / "p.tar")
    registry = Registry(box.data)
    try:
        with pytest.raises(InsufficientStorage) as info:
            push_package(registry, box.catalog, tmp_path / "p.tar", actor="t",
                         reserve_bytes=free_bytes(box.data) + 1)
        assert info.value.status == 507 and "free_reserve_bytes" in info.value.message
        assert [m.name for m in registry.models()] == ["m"]
    finally:
        registry.close()
    assert_still_serving(box, token(box))


# -- full disks ----------------------------------------------------------------------------

# RLIMIT_FSIZE makes every write past 2 MiB in a file fail with EFBIG (SIGXFSZ ignored):
# deterministic, unprivileged and local to the CLI process, unlike filling a real disk
FSIZE_CLI = ("import resource, signal; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
             "resource.setrlimit(resource.RLIMIT_FSIZE, (2 << 20, 2 << 20)); "
             "import appliance.cli.package; from appliance.cli import main; main()")


def test_push_onto_a_full_disk_exits_1_with_one_line_and_records_nothing(box, tmp_path):
    src = tmp_path / "src"
    (src / "fp32").mkdir(parents=True)
    big_model(src / "fp32" / "model.onnx", megabytes=8)
    m = manifest_dict(name="huge")
    m["variants"] = m["variants"][:1]
    (src / "model.toml").write_text(toml_text(m))
    build_package(src, tmp_path / "huge.tar")
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(box.data)}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)
    r = subprocess.run([sys.executable, "-c", FSIZE_CLI, "models", "push",
                        str(tmp_path / "huge.tar")], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert r.stderr.startswith("error: the disk holding") and "is full (File too large" in (
        r.stderr)
    registry = Registry(box.data)
    try:
        assert [m.name for m in registry.models()] == ["m"]
        assert not any(registry.store.staging.iterdir())
    finally:
        registry.close()
    assert_still_serving(box, token(box))


def test_a_full_sqlite_database_is_a_507_saying_so(tmp_path):
    conn = sqlite3.connect(tmp_path / "tiny.db")
    conn.execute("PRAGMA max_page_count = 2")  # SQLite's own "database or disk is full"
    conn.execute("CREATE TABLE t (x BLOB)")
    with pytest.raises(sqlite3.OperationalError) as info:
        conn.execute("INSERT INTO t VALUES (?)", [bytes(1 << 16)])
    conn.close()
    assert is_disk_full(info.value)
    error = storage_error(info.value, tmp_path)
    assert error.status == 507 and f"the disk holding {tmp_path} is full" in error.message

