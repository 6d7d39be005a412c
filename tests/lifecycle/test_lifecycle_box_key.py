"""CLI lifecycle commands on a box whose key comes from the ``appliance_box_key`` hook.

The plugin is real: a module plus a ``.dist-info`` with an ``appliance`` entry point on
the CLI's ``PYTHONPATH``, found by the plugin manager's entry-point loading like any
pip-installed plugin.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from helpers import unsigned_config
from helpers.models import scale_model

from appliance import hookimpl
from appliance.registry import Registry

KEY = bytes(range(32))
PLUGIN = f'''"""A box key from "the TPM" (a constant, for the test)."""
from appliance import hookimpl


@hookimpl
def appliance_box_key(data_dir):
    return {KEY!r}
'''


def install_plugin(site: Path) -> Path:
    """A pip-installed-looking plugin under ``site``: module, METADATA, entry point."""
    site.mkdir(parents=True)
    (site / "tpm_box_key.py").write_text(PLUGIN)
    info = site / "tpm_box_key-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tpm-box-key\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text("[appliance]\ntpm-box-key = tpm_box_key\n")
    return site


def cli(*args: str, data_dir: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "APPLIANCE_DATA_DIR": str(data_dir), "PYTHONPATH": str(site),
           "APPLIANCE_CONFIG": str(unsigned_config(data_dir.parent))}
    env.pop("APPLIANCE_DISABLE_PLUGIN_AUTOLOAD", None)  # the CLI loads entry points
    code = ("import appliance.cli.lifecycle, appliance.cli.models; "
            "from appliance.cli import main; main()")
    return subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True,
                          text=True, timeout=120)


def test_cli_promote_and_rollback_use_the_plugin_box_key_and_write_no_key_file(tmp_path):
    data, site = tmp_path / "var", install_plugin(tmp_path / "site")
    for factor in (2.0, 3.0):
        r = cli("models", "add", str(scale_model(tmp_path / f"s{factor}.onnx", factor)),
                "--name", "m", data_dir=data, site=site)
        assert r.returncode == 0, r.stderr
    box_key = data / "keys" / "box.key"
    assert not box_key.exists()  # the plugin supplies the key: none is written
    for version in ("1", "2"):  # each promotion loads (decrypts) the version in the CLI
        r = cli("models", "promote", "m", version, "--to", "production", "--json",
                data_dir=data, site=site)
        assert r.returncode == 0, r.stderr
        assert json.loads(r.stdout)["to"] == "production"
    r = cli("models", "rollback", "m", "--json", data_dir=data, site=site)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["version"] == "1"
    assert not box_key.exists()
    registry = Registry(data, box_key_provider=lambda: KEY)
    try:
        assert registry.version("m", "1").stage == "production"
        assert registry.version("m", "2").stage == "deprecated"
        assert registry.version("m", "2").failure_reason is None
    finally:
        registry.close()


class BoxKeyPlugin:
    """The same plugin, in-process."""

    @hookimpl
    def appliance_box_key(self, data_dir):
        return KEY


def test_the_registry_opener_applies_the_plugin_box_key_and_shares_it(tmp_path):
    from appliance.plugins import get_plugin_manager
    from appliance.registry.opener import connect_registry, open_registry

    pm = get_plugin_manager(autoload=False, extra=(BoxKeyPlugin(),))
    data = tmp_path / "var"
    with open_registry(data, pm=pm) as registry:
        assert registry.box_key_provider is not None and registry.box_key_provider() == KEY
        assert registry.keys.box_key() == KEY
        again = connect_registry(registry)  # another connection, same key and encryption
        try:
            assert again.box_key_provider() == KEY and again.store.encrypt
        finally:
            again.close()
    assert not (data / "keys" / "box.key").exists()
