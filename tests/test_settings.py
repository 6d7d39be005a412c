"""Settings: defaults < TOML file < APPLIANCE_* environment < CLI flags."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import ROOT

from appliance.errors import ConfigError
from appliance.settings import load_settings


def test_layers_override_in_order(tmp_path):
    cfg = tmp_path / "a.toml"
    cfg.write_text('port = 9001\nhost = "127.0.0.2"\nlog_level = "debug"\n')
    s = load_settings({"port": 9003}, config=cfg,
                      environ={"APPLIANCE_PORT": "9002", "APPLIANCE_HOST": "127.0.0.3"})
    assert (s.port, s.host, s.log_level) == (9003, "127.0.0.3", "debug")
    assert load_settings(environ={}).data_dir == Path("var")


def test_data_dir_comes_from_the_environment(tmp_path):
    s = load_settings(environ={"APPLIANCE_DATA_DIR": str(tmp_path)})
    assert s.registry_path == tmp_path / "registry.db"


def test_packaged_example_config_is_valid():
    s = load_settings(config=ROOT / "packaging" / "appliance.example.toml", environ={})
    assert s.demo_models is False


@pytest.mark.parametrize(("text", "fragment"), [
    ("prot = 1\n", "unknown key(s) prot"),
    ("port = [\n", "not valid TOML"),
    ("port = 'x'\n", "port"),
    ("port = 70000\n", "between 0 and 65535"),
])
def test_bad_config_names_the_problem(tmp_path, text, fragment):
    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        load_settings(config=cfg, environ={})
