"""Fixtures of the monitoring tests: promtool on PATH."""

from __future__ import annotations

import shutil
import subprocess

import pytest


@pytest.fixture(scope="session")
def promtool() -> str:
    """promtool, installed from the distribution's ``prometheus`` package when missing
    (CI machines start bare)."""
    path = shutil.which("promtool")
    if path is None:
        subprocess.run(["apt-get", "update"], check=True, capture_output=True)
        subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "prometheus"],
                       check=True, capture_output=True)
        path = shutil.which("promtool")
    assert path is not None, "promtool is not on PATH after installing prometheus"
    return path
