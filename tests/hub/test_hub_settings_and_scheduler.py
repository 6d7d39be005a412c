"""Hub settings refuse what the hub cannot run with; the scheduler re-signs on time and
survives a failing refresh."""

from __future__ import annotations

import logging
import threading

import pytest

from appliance.errors import ConfigError
from appliance.hub.scheduler import start_scheduler
from appliance.hub.settings import load_hub_settings


def test_defaults_and_hub_toml_and_flags_layer_in_order(tmp_path):
    settings = load_hub_settings(tmp_path)
    assert (settings.host, settings.port, settings.bins) == ("127.0.0.1", 8700, 16)
    assert settings.report_max_bytes == 1 << 20 and settings.auth.mode == "on"
    assert settings.auth.local_issuer == settings.auth.local_audience == "appliance-hub"
    (tmp_path / "hub.toml").write_text('port = 9000\nbins = 32\n[auth]\nleeway_s = 5\n')
    settings = load_hub_settings(tmp_path, {"port": 9100, "host": None})
    assert (settings.port, settings.bins, settings.auth.leeway_s) == (9100, 32, 5)
    assert settings.auth.local_issuer == "appliance-hub"


@pytest.mark.parametrize(("text", "match"), [
    ("bins = 12", "power of two"),
    ("report_max_bytes = 0", "report_max_bytes must be > 0"),
    ('[auth]\nmode = "off"', "always requires"),
    ("colour = 1", "colour"),
    ("port = [", "not valid TOML"),
])
def test_bad_hub_toml_is_a_config_error_naming_the_key(tmp_path, text, match):
    (tmp_path / "hub.toml").write_text(text + "\n")
    with pytest.raises(ConfigError, match=match):
        load_hub_settings(tmp_path)


def test_scheduler_refreshes_every_interval_and_survives_a_failure(hub, monkeypatch, caplog):
    calls: list[int] = []
    twice = threading.Event()

    def refresh():
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk full")
        twice.set()

    monkeypatch.setattr(hub.repository, "refresh", refresh)
    monkeypatch.setattr(hub.settings, "refresh_minutes", 0.1 / 60)
    caplog.set_level(logging.ERROR, logger="appliance.hub")
    scheduler = start_scheduler(hub)
    try:
        assert twice.wait(10), "the refresh job did not run again after failing"
    finally:
        scheduler.shutdown(wait=True)
    assert "re-signing timestamp and snapshot failed" in caplog.text
