"""Hub fixtures: a real hub directory (TUF repository, SQLite file, keys) in tmp_path, a
real HTTP server on 127.0.0.1, a trusted publisher and operator tokens."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hub_helpers import Box, bearer, public_pem, token

from appliance.hub.app import create_hub_app
from appliance.hub.enrolment import issue_token
from appliance.hub.fleet import add_group, trust_publisher
from appliance.hub.services import Hub, init_hub, open_hub
from appliance.hub.settings import HubSettings, load_hub_settings
from appliance.testing.server import ServerThread


@pytest.fixture
def hub_settings(tmp_path) -> HubSettings:
    """A freshly initialised hub in ``tmp_path/hub`` (no scheduler, small report limit)."""
    settings = load_hub_settings(tmp_path / "hub", {"scheduler": False, "bins": 4,
                                                    "report_max_bytes": 64 * 1024})
    init_hub(settings)
    return settings


@pytest.fixture
def hub(hub_settings) -> Iterator[Hub]:
    opened = open_hub(hub_settings)
    yield opened
    opened.close()


@pytest.fixture
def publisher_key(hub) -> Ed25519PrivateKey:
    """A publisher the hub trusts."""
    key = Ed25519PrivateKey.generate()
    trust_publisher(hub, public_pem(key), "ci", actor="ops")
    return key


@pytest.fixture
def groups(hub) -> tuple[str, str]:
    add_group(hub, "lab", actor="ops")
    add_group(hub, "field", actor="ops")
    return "lab", "field"


@pytest.fixture
def hub_url(hub_settings) -> Iterator[str]:
    """The hub's API served by a real uvicorn on a free loopback port (its own Hub)."""
    server = ServerThread(create_hub_app(open_hub(hub_settings)))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def client(hub_url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=hub_url, timeout=30) as c:
        yield c


@pytest.fixture
def operator(hub_settings) -> dict[str, str]:
    """Authorization headers of an operator (hub:read, hub:operate)."""
    return bearer(token(hub_settings, "alice", "hub:read", "hub:operate"))


@pytest.fixture
def enrol(hub, client):
    """enrol(group) -> an enrolled Box (through POST /v1/enroll)."""
    def enrol_one(group: str) -> Box:
        box = Box()
        answer = client.post("/v1/enroll",
                             json=box.enrol_body(issue_token(hub, group, actor="ops").token))
        assert answer.status_code == 201, answer.text
        box.device_id = answer.json()["device_id"]
        return box
    return enrol_one
