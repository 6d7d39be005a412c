"""A data directory this user cannot write is one clear line and exit code 1, not a
SQLite traceback. The tests run as root, so the refused user is a real unprivileged uid:
``setpriv`` drops to 65534 and keeps only CAP_DAC_READ_SEARCH, which lets it reach the
interpreter (under /root) and the test's tmp_path, and grants no write anywhere."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.datadir import DataDirError, check_data_dir, permission_error

NOBODY = 65534
needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run the CLI as an unprivileged uid")


def run_as_nobody(*args: str, data_dir: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir), "HOME": "/nonexistent"}
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=+dac_read_search", "--ambient-caps=+dac_read_search"]
    return subprocess.run([*drop, sys.executable, "-m", "appliance.cli", *args], env=env,
                          capture_output=True, text=True, timeout=60, cwd="/")


def root_owned(path: Path) -> Path:
    path.mkdir(mode=0o755)
    os.chown(path, 0, 0)
    path.chmod(0o755)
    return path


def assert_one_clear_line(result: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@needs_root
@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["models", "list"]])
def test_root_owned_data_dir_names_directory_user_owner_and_fix(tmp_path, command):
    data_dir = root_owned(tmp_path / "var")
    result = run_as_nobody(*command, data_dir=data_dir)
    assert_one_clear_line(result, f"data directory {data_dir} is not writable",
                          f"uid {NOBODY}", f"gid {NOBODY}", "owned by uid 0",
                          f"chown -R {NOBODY}:{NOBODY} {data_dir}", "APPLIANCE_DATA_DIR")


@needs_root
def test_data_dir_that_cannot_be_created_says_how_to_create_it(tmp_path):
    parent = root_owned(tmp_path / "srv")
    result = run_as_nobody("models", "list", data_dir=parent / "appliance")
    assert_one_clear_line(result, "does not exist and cannot be created",
                          f"{parent} is owned by uid 0",
                          f"install -d -o {NOBODY} -g {NOBODY} {parent / 'appliance'}")


@needs_root
def test_root_owned_registry_in_a_writable_dir_is_named(tmp_path):
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    sqlite3.connect(data_dir / "registry.db").close()  # root-owned, 0644
    os.chown(data_dir, NOBODY, NOBODY)
    result = run_as_nobody("models", "list", data_dir=data_dir)
    assert_one_clear_line(result, "holds files not writable",
                          f"{data_dir / 'registry.db'} is owned by uid 0",
                          f"chown -R {NOBODY}:{NOBODY} {data_dir}")


def test_writable_or_creatable_data_dir_passes_and_is_not_created(tmp_path):
    check_data_dir(tmp_path)
    check_data_dir(tmp_path / "a" / "b")
    assert not (tmp_path / "a").exists()


def test_a_file_where_the_data_dir_should_be_is_refused(tmp_path):
    (tmp_path / "var").write_text("")
    with pytest.raises(DataDirError, match="exists and is not a directory"):
        check_data_dir(tmp_path / "var")


def test_permission_refusal_deeper_in_the_directory_names_the_file(tmp_path):
    blob = tmp_path / "artifacts" / "ab" / "cd"
    blob.parent.mkdir(parents=True)
    blob.write_text("")
    found = permission_error(PermissionError(13, "Permission denied", str(blob)), tmp_path)
    assert found is not None and str(blob) in found.message and "chown -R" in found.message
    assert permission_error(PermissionError(13, "denied", "/etc/elsewhere"), tmp_path) is None
    assert permission_error(sqlite3.OperationalError("no such table: x"), tmp_path) is None
