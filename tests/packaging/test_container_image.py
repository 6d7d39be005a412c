"""The container image for real: packaging/container/check.sh builds the Containerfile with
podman from a local debootstrap base (installing podman, runc and debootstrap when they are
missing), runs it read-only as uid 10001, infers, checks the unwritable-volume message, the
size goal and a clean stop. A few minutes on a fresh machine, about one with its cache."""

from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_image_builds_serves_an_inference_and_stays_under_750_mb():
    run = subprocess.run(["bash", str(ROOT / "packaging" / "container" / "check.sh")],
                         capture_output=True, text=True, timeout=1800)
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert "check.sh: OK" in out and "SKIP" not in out, out[-4000:]
