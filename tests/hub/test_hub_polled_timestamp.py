"""The hub's own ``/repo`` answers the polled ``timestamp.json`` with 304 when the box
holds it already, as nginx does; a new timestamp is sent whole."""

from __future__ import annotations

from appliance.hub.polled import etag_matches

TS = "/repo/metadata/timestamp.json"


def test_matching_if_none_match_is_answered_304_with_no_body(client):
    first = client.get(TS)
    etag = first.headers["ETag"]
    again = client.get(TS, headers={"If-None-Match": etag})
    assert first.status_code == 200 and first.json()["signed"]["_type"] == "timestamp"
    assert first.headers["Cache-Control"] == "no-cache"
    assert again.status_code == 304 and again.content == b"" and again.headers["ETag"] == etag


def test_a_new_timestamp_is_sent_whole_under_a_new_etag(client, hub):
    first = client.get(TS)
    hub.repository.set_desired("box-x", {"m": {"version": "1"}})
    after = client.get(TS, headers={"If-None-Match": first.headers["ETag"]})
    assert after.status_code == 200 and after.headers["ETag"] != first.headers["ETag"]
    assert after.json()["signed"]["version"] > first.json()["signed"]["version"]


def test_other_repository_files_are_still_served(client):
    assert client.get("/repo/metadata/1.root.json").json()["signed"]["_type"] == "root"


def test_etag_lists_weak_forms_and_star_match():
    assert etag_matches('"a", W/"b"', '"b"') and etag_matches("*", '"x"')
    assert not etag_matches(None, '"x"') and not etag_matches('"y"', '"x"')
