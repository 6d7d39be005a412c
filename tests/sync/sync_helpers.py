"""Helpers for the box-side sync tests: signed packages, a box (data directory, registry,
backends) to sync, and reading its health."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from appliance.registry import Registry
from appliance.runtime.catalog import BackendCatalog
from appliance.runtime.loading import load_check
from appliance.security.trust import publishers
from appliance.settings import Settings, load_settings
from appliance.sync.box import Box


def closed_port() -> int:
    """A loopback port nothing listens on (a hub that is gone)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)


def box_settings(data_dir: Path, **sync: object) -> Settings:
    return load_settings({"data_dir": data_dir, "scheduler": False,
                          "sync": {"timeout_s": 5.0, **sync}}, environ={})


@dataclass
class TestBox:
    """A box's data directory with an open registry; :meth:`box` is what a cycle needs."""

    settings: Settings
    registry: Registry
    catalog: BackendCatalog

    __test__ = False  # not a test class

    def box(self, lines: list[str] | None = None) -> Box:
        return Box(settings=self.settings, registry=self.registry, catalog=self.catalog,
                   loader=load_check(self.registry, self.catalog, 60),
                   health=lambda: {"status": "ok", "reasons": []},
                   hardware=lambda: {"profile": "test"},
                   progress=(lines.append if lines is not None else lambda _: None))

    def stage_of(self, model: str, version: str) -> str:
        return self.registry.version(model, version).stage

    def close(self) -> None:
        self.registry.close()


def make_box(data_dir: Path, pm, publisher: Ed25519PrivateKey | None = None,
             **sync: object) -> TestBox:
    """A box that trusts ``publisher`` (packages it signs may go to production)."""
    settings = box_settings(data_dir, **sync)
    registry = Registry(data_dir)
    if publisher is not None:
        publishers(registry.keys.dir).add("ci", public_pem(publisher), "the test key")
    return TestBox(settings, registry, BackendCatalog(pm))
