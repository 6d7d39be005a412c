"""TEMPORARY stand-in for appliance/sync/tuf_client.py and errors.py until they land
(remove then): the interface the cycle codes against, reading the hub's stand-in
repository over plain HTTP (no TUF verification)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx


class SyncRefused(Exception):  # noqa: N818  (the real name)
    def __init__(self, kind: str, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind, self.message = kind, message


class HubClient:
    def __init__(self, metadata_dir, base_url, cache_dir, *, bootstrap=None, fetcher=None):
        self.base = base_url.rstrip("/").rsplit("/", 1)[0]  # .../repo
        self.cache_dir = Path(cache_dir)
        self.sizes: dict[str, str] = {}

    def _get(self, path: str) -> httpx.Response:
        try:
            return httpx.get(f"{self.base}/{path}", timeout=5)
        except httpx.HTTPError as exc:
            raise SyncRefused("unreachable", f"{self.base}: {exc}") from None

    def refresh(self) -> None:
        if self._get("metadata/root.json").status_code != 200:
            raise SyncRefused("unreachable", "no root.json")

    def desired(self, device_id: str):
        answer = self._get(f"targets/devices/{device_id}/desired.json")
        return None if answer.status_code == 404 else answer.json()

    def download(self, target_path: str, dest_dir: Path) -> Path:
        answer = self._get(f"targets/{target_path}")
        if answer.status_code != 200:
            raise SyncRefused("other", f"{target_path}: {answer.status_code}")
        out = Path(dest_dir) / hashlib.sha256(answer.content).hexdigest()
        out.write_bytes(answer.content)
        return out


def install() -> None:
    import sys
    import types

    for name in ("tuf_client", "errors"):
        try:
            __import__(f"appliance.sync.{name}")
        except ImportError:
            module = types.ModuleType(f"appliance.sync.{name}")
            module.SyncRefused = SyncRefused  # type: ignore[attr-defined]
            module.HubClient = HubClient  # type: ignore[attr-defined]
            sys.modules[f"appliance.sync.{name}"] = module
