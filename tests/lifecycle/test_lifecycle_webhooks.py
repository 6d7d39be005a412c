"""Consumer webhooks end to end: the outbox a deprecation fills, its delivery by the
serving process (also of notices the CLI queued), retries, and the registry migration.

Real registries, a real HTTP endpoint on 127.0.0.1, real CLI processes.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from helpers.models import scale_model
from test_lifecycle_governance import cli, events

from appliance.errors import BadRequest, NotFound
from appliance.lifecycle.consumers import add_consumer
from appliance.lifecycle.deprecation import deprecate
from appliance.lifecycle.holds import active_holds
from appliance.lifecycle.settings import WebhookSettings
from appliance.lifecycle.webhooks import deliver_due, outbox, post_pinned
from appliance.packages.importer import import_model
from appliance.registry import Registry


@pytest.fixture
def add(registry, catalog, tmp_path):
    """add(name) -> version: import a real ONNX model."""
    counter = iter(range(1000))

    def _add(name: str) -> str:
        path = scale_model(tmp_path / f"m{next(counter)}.onnx", 2.0 + next(counter))
        return import_model(registry, catalog, path, name=name, created_by="alice").version

    return _add


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.received.append((self.path, self.headers["Content-Type"],  # type: ignore
                                     json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook():
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    server.received = []  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_deprecation_queues_webhooks_and_the_outbox_delivers_them(registry, add, webhook):
    add("bc")
    add("bc")
    allow = WebhookSettings(allow=["127.0.0.1"], backoff_s=0, max_attempts=2, timeout_s=5)
    url = f"http://127.0.0.1:{webhook.server_port}/hook"
    add_consumer(registry, "app", "bc", ["y"], "app@example.com", webhook=url, webhooks=allow)
    add_consumer(registry, "down", "bc", ["y"], "down@example.com",
                 webhook=f"http://127.0.0.1:{closed_port()}/hook", webhooks=allow)
    add_consumer(registry, "manual", "bc", ["y"], "manual@example.com")
    result = deprecate(registry, "bc", "1", deprecation_date="2026-12-01",
                       sunset_date="2027-03-01T12:00:00Z", successor="2", actor="ops")
    assert [bool(n["outbox_id"]) for n in result["notices"]] == [True, True, False]
    assert webhook.received == []  # deprecate itself sends nothing
    assert deliver_due(registry.data_dir, allow) == 3  # app once, down twice (then given up)

    ((path, ctype, body),) = webhook.received
    assert path == "/hook" and ctype == "application/json"
    assert body["kind"] == "deprecation" and body["consumer"] == "app"
    assert (body["model"], body["version"], body["successor"]) == ("bc", "1", "2")
    assert body["deprecation_date"] == "2026-12-01T00:00:00+00:00"
    rows = {r[0]: r[1:] for r in registry.db.execute(
        "SELECT consumer, kind, delivered, detail FROM notices ORDER BY id")}
    assert rows["app"][:2] == ("deprecation", 1)
    assert rows["down"][1] == 0 and "ConnectError" in json.loads(rows["down"][2])["error"]
    assert rows["manual"][1] == 0 and "no webhook" in json.loads(rows["manual"][2])["pending"]
    states = {r["consumer"]: r for r in outbox(registry.db)}
    assert states["app"]["status"] == "delivered" and states["app"]["attempts"] == 1
    assert states["down"]["status"] == "failed" and states["down"]["attempts"] == 2
    assert states["down"]["last_error"].startswith("gave up after 2 attempt(s): ConnectError")
    record = registry.version("bc", "1")
    assert (record.successor, record.sunset_date) == ("2", "2027-03-01T12:00:00+00:00")
    assert events(registry, "deprecate")[0][1] == "ops"

    with pytest.raises(BadRequest, match="before the deprecation date"):
        deprecate(registry, "bc", "1", deprecation_date="2027-01-01", sunset_date="2026-01-01",
                  actor="ops")
    with pytest.raises(NotFound, match="no version '7'"):
        deprecate(registry, "bc", "1", deprecation_date="2027-01-01", successor="7", actor="o")


def test_cli_deprecation_only_queues_and_the_serving_process_delivers_it(tmp_path, webhook,
                                                                          monkeypatch):
    from helpers import make_services, serve

    from appliance.plugins import get_plugin_manager

    config = tmp_path / "box.toml"  # read by the CLI; the server gets the same settings
    config.write_text('signing_policy = {}\n[lifecycle.webhooks]\nallow = ["127.0.0.1"]\n'
                      "poll_s = 0.3\n")
    monkeypatch.setenv("APPLIANCE_CONFIG", str(config))
    import appliance_onnxruntime

    services = make_services(tmp_path / "var", get_plugin_manager(
        autoload=False, extra=(appliance_onnxruntime,)), scheduler=True,
        lifecycle={"webhooks": {"allow": ["127.0.0.1"], "poll_s": 0.3}})
    import_model(services.registry, services.catalog, scale_model(tmp_path / "m.onnx", 2.0),
                 name="bc")
    server = serve(services)
    try:
        url = f"http://127.0.0.1:{webhook.server_port}/hook"
        r = cli("consumers", "add", "app", "--model", "bc", "--reads", "y", "--contact",
                "a@example.com", "--webhook", url, data_dir=tmp_path / "var")
        assert r.returncode == 0, r.stderr
        r = cli("models", "deprecate", "bc", "1", "--on", "2026-12-01", "--json",
                data_dir=tmp_path / "var")
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["notices"][0]["outbox_id"]
        deadline = time.monotonic() + 20
        while not webhook.received:
            assert time.monotonic() < deadline, "the server never delivered the CLI's notice"
            time.sleep(0.05)
        assert webhook.received[0][2]["consumer"] == "app"
        while outbox(services.registry.db)[0]["status"] != "delivered":
            assert time.monotonic() < deadline, "the delivery was never recorded"
            time.sleep(0.05)
        r = cli("consumers", "outbox", "--status", "delivered", data_dir=tmp_path / "var")
        assert r.returncode == 0 and "delivered" in r.stdout and url in r.stdout
    finally:
        server.stop()


def test_holds_recorded_before_placed_by_existed_name_their_holder_as_placer(tmp_path):
    import sqlite3

    import sqlite_utils

    from appliance.registry import db as registry_db

    path = tmp_path / "var" / "registry.db"
    path.parent.mkdir()
    old = sqlite_utils.Database(sqlite3.connect(path, isolation_level=None))
    old["_migrations"].create({"number": int, "name": str, "applied_at": str}, pk="number")
    for number, name, fn in registry_db.MIGRATIONS[:4]:  # a registry of the last release
        fn(old)
        old.execute("INSERT INTO _migrations VALUES (?, ?, 'then')", [number, name])
    old.execute("INSERT INTO holds (model, version, holder, reason, at) VALUES "
                "('bc', '1', 'legal', 'case 7', '2026-01-01')")
    old.conn.close()
    registry = Registry(tmp_path / "var")  # opening it applies the new migration
    try:
        (hold,) = active_holds(registry)
        assert (hold.holder, hold.placed_by) == ("legal", "legal")
        assert registry.db.execute("SELECT count(*) FROM webhook_outbox").fetchone()[0] == 0
    finally:
        registry.close()


def test_a_host_that_does_not_resolve_is_retried_not_given_up():
    delivered, outcome, permanent = post_pinned("http://no-such-host.invalid/hook", {},
                                                WebhookSettings())
    assert (delivered, permanent) == (False, False) and "does not resolve" in outcome
