"""Helpers the tests share (fixtures stay in ``tests/conftest.py``): services over a data
dir, a real server on 127.0.0.1, a config file for unsigned test models, the repo root.
Toy models built offline are in :mod:`helpers.models`.
"""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", "1")

from appliance.api import create_app  # noqa: E402
from appliance.services import Services, build_services  # noqa: E402
from appliance.settings import load_settings  # noqa: E402
from appliance.testing.server import ServerThread  # noqa: E402

#: the repository root (tests live one or two levels below it)
ROOT = Path(__file__).resolve().parents[2]
UNSIGNED_OK = "signing_policy = {}\n"


def unsigned_config(directory: Path) -> Path:
    """A config file for CLI subprocesses that promote unsigned test models."""
    path = directory / "unsigned-ok.toml"
    path.write_text(UNSIGNED_OK)
    return path


def make_services(data_dir: Path, pm, **overrides) -> Services:
    """Services over ``data_dir`` (no scheduler; unsigned toy models may be promoted)."""
    base = {"data_dir": data_dir, "scheduler": False, "signing_policy": {}}
    settings = load_settings({**base, **overrides}, environ={})
    return build_services(settings, pm=pm)


def serve(services: Services) -> ServerThread:
    """Start a real server and wait until start-up model loading is done."""
    server = ServerThread(create_app(services, load_in_background=False))
    server.start()
    return server
