"""The packaged systemd unit: valid for systemd, hardened to an exposure of 2.0 or less,
starts without a settings file, and says why each hardening it leaves out is left out."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import ROOT

UNIT = ROOT / "packaging" / "appliance.service"
EXEC = "/opt/appliance/bin/appliance"
pytestmark = pytest.mark.skipif(shutil.which("systemd-analyze") is None,
                                reason="systemd-analyze is not installed")


def unit_with_existing_binary(tmp_path: Path) -> Path:
    """A copy whose ExecStart names a binary that exists here (verify checks it)."""
    text = UNIT.read_text()
    assert f"ExecStart={EXEC} serve" in text
    copy = tmp_path / "appliance.service"
    copy.write_text(text.replace(EXEC, shutil.which("true") or "/bin/true"))
    return copy


def test_unit_passes_systemd_analyze_verify_without_a_warning(tmp_path):
    done = subprocess.run(["systemd-analyze", "verify", "--man=no",
                           str(unit_with_existing_binary(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr  # unknown keys and bad values only warn


def test_unit_exposure_is_at_most_two(tmp_path):
    done = subprocess.run(["systemd-analyze", "security", "--offline=true", "--no-pager",
                           str(unit_with_existing_binary(tmp_path))],
                          capture_output=True, text=True, timeout=60)
    found = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", done.stdout)
    assert found, done.stdout + done.stderr
    assert float(found.group(1)) <= 2.0, done.stdout


def test_unit_names_no_settings_file_and_provides_the_configuration_directory():
    text = UNIT.read_text()
    assert "APPLIANCE_CONFIG=" not in text  # a missing default file means the defaults
    assert "ConfigurationDirectory=appliance" in text
    assert "StateDirectory=appliance" in text and "StateDirectoryMode=0750" in text
    assert "Environment=APPLIANCE_DATA_DIR=/var/lib/appliance" in text


def test_a_start_up_error_does_not_restart_forever():
    text = UNIT.read_text()
    assert "Restart=on-failure" in text
    assert re.search(r"^StartLimitBurst=\d+$", text, re.M)
    assert re.search(r"^StartLimitIntervalSec=\d+$", text, re.M)


@pytest.mark.parametrize("setting", ["ProcSubset=", "~@resources", "MemoryDenyWriteExecute=",
                                     "PrivateDevices=", "IPAddressDeny=", "PrivateNetwork="])
def test_each_hardening_left_out_says_why(setting):
    text = UNIT.read_text()
    comment = re.search(rf"^# {re.escape(setting)}\S* is left out[^:]*: (.+)$", text, re.M)
    assert comment and len(comment.group(1)) > 20, f"no reason given for leaving out {setting}"
    assert not re.search(rf"^{re.escape(setting)}", text, re.M)
