"""An idle box's poll: ``timestamp.json`` is fetched with ``If-None-Match``, a static host
answers 304 with no body, and the kept bytes are verified by ngclient as if downloaded —
so a frozen mirror answering 304 forever is still refused once the timestamp expires."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from static_server import StaticServer

from appliance.hub.tuf_publish import DAY
from appliance.hub.tuf_repo import HubRepository
from appliance.sync.errors import SyncRefused

DEVICE = "box-a"


def test_unchanged_timestamp_is_answered_304_and_moves_no_body(
    hub: HubRepository, server: StaticServer, make_box
):
    hub.set_desired(DEVICE, {"m": {"version": "1"}})
    box = make_box()
    box.refresh([DEVICE])
    server.take_log()

    make_box().refresh([DEVICE])  # a fresh client in the same folders: the next cycle
    log = server.take_log()

    assert ("/metadata/timestamp.json", 304, 0) in log
    assert server.body_bytes(log) < 200  # only the next-root probe's 404 text
    assert box.desired(DEVICE) == {"m": {"version": "1"}}


def test_changed_timestamp_is_downloaded_and_its_news_taken(
    hub: HubRepository, server: StaticServer, make_box
):
    hub.set_desired(DEVICE, {"m": {"version": "1"}})
    make_box().refresh([DEVICE])
    hub.set_desired(DEVICE, {"m": {"version": "2"}})
    server.take_log()

    box = make_box()
    box.refresh([DEVICE])

    statuses = {path: status for path, status, _ in server.take_log()}
    assert statuses["/metadata/timestamp.json"] == 200
    assert box.desired(DEVICE) == {"m": {"version": "2"}}


def test_frozen_mirror_answering_304_is_refused_once_the_timestamp_expires(
    hub: HubRepository, hub_clock, server: StaticServer, make_box
):
    hub_clock.advance(-DAY + 2.0)  # the timestamp signed now expires in two seconds
    hub.set_desired(DEVICE, {"m": {"version": "1"}})
    make_box().refresh([DEVICE])
    time.sleep(2.5)
    server.take_log()

    box = make_box()
    with pytest.raises(SyncRefused) as caught:
        box.refresh([DEVICE])
    assert caught.value.kind == "freeze", caught.value.message
    assert ("/metadata/timestamp.json", 304, 0) in server.take_log()


def test_unreadable_kept_body_falls_back_to_a_plain_download(
    hub: HubRepository, server: StaticServer, make_box, tmp_path: Path
):
    hub.set_desired(DEVICE, {"m": {"version": "1"}})
    make_box().refresh([DEVICE])
    for kept in (tmp_path / "box" / "http-cache").glob("*.json"):
        kept.write_text("{not json")
    server.take_log()

    box = make_box()
    box.refresh([DEVICE])

    statuses = {path: status for path, status, _ in server.take_log()}
    assert statuses["/metadata/timestamp.json"] == 200
    assert box.desired(DEVICE) == {"m": {"version": "1"}}


def test_each_new_timestamp_gets_a_later_mtime_second_for_mtime_based_etags(
    hub: HubRepository,
):
    path = hub.layout.repo_dir / "metadata" / "timestamp.json"
    seconds = []
    for n in range(3):  # well within one second
        hub.set_desired(DEVICE, {"m": {"version": str(n)}})
        seconds.append(int(path.stat().st_mtime))
    assert seconds[0] < seconds[1] < seconds[2]
