"""Fleet fixtures: a hub's TUF repository in ``tmp_path``, served by a real HTTP server on
127.0.0.1, and boxes (``HubClient``) with their own persistent metadata and cache."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from helpers.clock import Clock
from static_server import StaticServer

from appliance.hub.tuf_repo import HubRepository
from appliance.sync.tuf_client import HubClient

BoxFactory = Callable[..., HubClient]


@pytest.fixture
def hub_clock() -> Clock:
    """The hub's clock, starting now (boxes check expiry against the real time)."""
    return Clock(float(int(time.time())))


@pytest.fixture
def hub(tmp_path: Path, hub_clock: Clock) -> HubRepository:
    return HubRepository.create(tmp_path / "hub", bins=16, clock=hub_clock)


@pytest.fixture
def server(hub: HubRepository) -> Iterator[StaticServer]:
    srv = StaticServer(hub.layout.repo_dir)
    yield srv
    srv.stop()


@pytest.fixture
def make_box(tmp_path: Path, hub: HubRepository, server: StaticServer) -> Iterator[BoxFactory]:
    """``make_box(name="box")``: a box enrolled with the hub's current root, talking to
    ``server``; the same name gives the same folders (a restarted box)."""
    made: list[HubClient] = []

    def make(name: str = "box", **kwargs: object) -> HubClient:
        base = tmp_path / name
        kwargs.setdefault("bootstrap", hub.root_bytes())
        made.append(HubClient(base / "metadata", server.url, base / "cache", **kwargs))
        return made[-1]

    yield make
    for client in made:
        client.close()
