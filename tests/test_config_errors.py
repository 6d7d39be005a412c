"""A missing settings file at the default place means the defaults; a file that was
named and is missing, or a broken one, is one line on stderr and exit code 1."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.errors import ConfigError
from appliance.settings import load_settings


def run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items()
            if k not in ("APPLIANCE_CONFIG", "CONFIGURATION_DIRECTORY")}
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args],
                          env={**base, **env}, capture_output=True, text=True, timeout=60)


def assert_one_line_exit_1(result: subprocess.CompletedProcess[str], fragment: str) -> None:
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0, result.stderr
    assert fragment in result.stderr


def test_missing_default_config_means_defaults(tmp_path):
    settings = load_settings(environ={"CONFIGURATION_DIRECTORY": str(tmp_path)})
    assert settings.port == 8000
    result = run("models", "list", "--data-dir", str(tmp_path / "var"),
                 env={"CONFIGURATION_DIRECTORY": str(tmp_path)})
    assert result.returncode == 0, result.stderr


def test_config_in_the_configuration_directory_is_read(tmp_path):
    (tmp_path / "appliance.toml").write_text("port = 9100\n")
    assert load_settings(environ={"CONFIGURATION_DIRECTORY": str(tmp_path)}).port == 9100


def test_named_config_that_is_missing_is_one_line_and_exit_1(tmp_path):
    missing = tmp_path / "nope.toml"
    for env, args in [({"APPLIANCE_CONFIG": str(missing)}, ()),
                      ({}, ("--config", str(missing)))]:
        result = run(*args, "serve", "--data-dir", str(tmp_path / "var"), env=env)
        assert_one_line_exit_1(result, f"config file {missing} does not exist (named by")


@pytest.mark.parametrize(("text", "fragment"), [
    ("port = [\n", "is not valid TOML"),
    ("prot = 1\n", "unknown key(s) prot"),
    ("[logging]\nformat = 'xml'\n", "logging.format must be one of text, json"),
])
def test_broken_config_is_one_line_and_exit_1(tmp_path, text, fragment):
    (tmp_path / "appliance.toml").write_text(text)
    result = run("serve", "--data-dir", str(tmp_path / "var"),
                 env={"CONFIGURATION_DIRECTORY": str(tmp_path)})
    assert_one_line_exit_1(result, fragment)


def test_unreadable_named_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="is a directory"):
        load_settings(config=Path(tmp_path), environ={})
