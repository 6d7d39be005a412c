"""Sync fixtures: a real hub (its litestar app on 127.0.0.1, SQLite, keys) with a group,
a trusted publisher and enrolment tokens, and boxes with their own data directories."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sync_helpers import make_box, public_pem

from appliance.hub.app import create_hub_app
from appliance.hub.enrolment import issue_token
from appliance.hub.fleet import add_group, trust_publisher
from appliance.hub.services import Hub, init_hub, open_hub
from appliance.hub.settings import HubSettings, load_hub_settings
from appliance.testing.server import ServerThread


@pytest.fixture
def hub_settings(tmp_path) -> HubSettings:
    settings = load_hub_settings(tmp_path / "hub", {"scheduler": False, "bins": 4})
    init_hub(settings)
    return settings


@pytest.fixture
def hub(hub_settings) -> Iterator[Hub]:
    opened = open_hub(hub_settings)
    add_group(opened, "lab", actor="ops")
    add_group(opened, "field", actor="ops")
    yield opened
    opened.close()


@pytest.fixture
def publisher(hub) -> Ed25519PrivateKey:
    """A CI publisher the hub (and the boxes made with :func:`box`) trust."""
    key = Ed25519PrivateKey.generate()
    trust_publisher(hub, public_pem(key), "ci", actor="ops")
    return key


@pytest.fixture
def hub_url(hub_settings, hub) -> Iterator[str]:
    """The hub's API (and its static ``/repo``) on a free loopback port."""
    server = ServerThread(create_hub_app(open_hub(hub_settings)))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def enrolment_token(hub):
    """token(group="lab") -> a fresh one-time enrolment token."""
    return lambda group="lab": issue_token(hub, group, actor="ops").token


@pytest.fixture
def box(tmp_path, ort_plugin_manager, publisher):
    """box(name="box1") -> a TestBox in tmp_path/<name> trusting the publisher."""
    made = []

    def make(name: str = "box1", **sync: object):
        made.append(make_box(tmp_path / name, ort_plugin_manager, publisher, **sync))
        return made[-1]
    yield make
    for one in made:
        one.close()
