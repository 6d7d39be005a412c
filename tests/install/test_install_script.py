"""packaging/install.sh, step by step (sourced, so no bundle is needed): the service user
under --root, created once whichever tool is there."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

INSTALL_SH = ROOT / "packaging" / "install.sh"


def run_steps(root, steps: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Source install.sh as if it ran from a bundle (HERE = packaging/), then ``steps``."""
    script = (f'set -euo pipefail; . "{INSTALL_SH}"; HERE="{INSTALL_SH.parent}"; '
              f'parse_args --root "{root}"; {steps}')
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                          env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", **env})


def passwd_lines(root, user: str = "appliance") -> list[str]:
    return [line for line in (root / "etc" / "passwd").read_text().splitlines()
            if line.startswith(f"{user}:")]


@pytest.mark.parametrize("tool", ["systemd-sysusers", "useradd"])
def test_service_user_is_created_once_under_root(tmp_path, tool):
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} is not installed here")
    env = {"SYSUSERS": "no-such-sysusers"} if tool == "useradd" else {}
    for _ in range(2):
        proc = run_steps(tmp_path, "create_user; service_ids", **env)
        assert proc.returncode == 0, proc.stderr
    assert "user appliance exists" in proc.stdout
    [line] = passwd_lines(tmp_path)
    uid, gid = line.split(":")[2:4]
    assert proc.stdout.splitlines()[-1] == f"{uid} {gid}"
    assert line.endswith(":/var/lib/appliance:/usr/sbin/nologin")
    assert (tmp_path / "etc" / "sysusers.d" / "appliance.conf").is_file()


def test_install_sh_never_touches_the_host_user_database(tmp_path):
    host = Path("/etc/passwd")
    before = host.read_text()
    run_steps(tmp_path, "create_user")
    assert host.read_text() == before


def test_without_a_user_tool_install_sh_says_what_to_do(tmp_path):
    proc = run_steps(tmp_path, "create_user", SYSUSERS="no-such-sysusers",
                     USERADD="no-such-useradd")
    assert proc.returncode == 1
    assert "create a system user appliance first" in proc.stderr


def test_install_sh_refuses_to_run_outside_a_bundle(tmp_path):
    proc = subprocess.run(["bash", "-c", f'. "{INSTALL_SH}"; HERE="{tmp_path}"; check_bundle'],
                          capture_output=True, text=True)
    assert proc.returncode == 1
    assert "run install.sh from an unpacked bundle" in proc.stderr
