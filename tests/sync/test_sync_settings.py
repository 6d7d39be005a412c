"""``[sync]`` settings: defaults, and a bad value named at load time."""

from __future__ import annotations

import pytest

from appliance.errors import ConfigError
from appliance.settings import load_settings


def test_defaults_sync_every_five_minutes_with_jitter_once_enrolled():
    sync = load_settings(environ={}).sync
    assert (sync.enabled, sync.hub_url, sync.interval_s, sync.jitter) == (True, None, 300.0,
                                                                           0.1)


def test_a_hub_url_loses_its_trailing_slash():
    sync = load_settings({"sync": {"hub_url": "https://hub.example:8700/"}}, environ={}).sync
    assert sync.hub_url == "https://hub.example:8700"


@pytest.mark.parametrize(("section", "named"), [
    ({"hub_url": "ftp://hub"}, "not an http:// or https:// URL"),
    ({"jitter": 2}, "jitter"),
    ({"interval_s": 0}, "interval_s"),
    ({"outbox_max_rows": 1}, "outbox_max_rows"),
    ({"bogus": 1}, "bogus"),
])
def test_a_bad_sync_setting_is_named(section, named):
    with pytest.raises(ConfigError, match=named):
        load_settings({"sync": section}, environ={})
