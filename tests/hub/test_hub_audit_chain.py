"""The hub's audit chain: every operator command hash-chained; verify finds an edit."""

from __future__ import annotations

import sqlite3

from hub_helpers import bearer, token

from appliance.hub.audit_chain import GENESIS, chain_hash, verify_chain
from appliance.hub.fleet import add_group
from appliance.hub.store import HUB_DB


def _commands(hub) -> None:
    for name in ("a", "b", "c"):
        add_group(hub, name, f"group {name}", actor="ops")


def test_intact_chain_verifies_and_links_every_record(hub):
    _commands(hub)
    result = verify_chain(hub.store)
    assert result == {"ok": True, "records": 3, "head": result["head"], "problem": None,
                      "bad_seq": None}
    db = sqlite3.connect(hub.directory / HUB_DB)
    rows = db.execute("SELECT seq, at, actor, action, detail, prev_hash, hash FROM audit "
                      "ORDER BY seq").fetchall()
    assert rows[0][5] == GENESIS and rows[1][5] == rows[0][6]
    seq, at, actor, action, detail, prev, digest = rows[2]
    assert chain_hash(prev, seq, at, actor, action, detail) == digest == result["head"]


def test_verify_catches_an_edited_row(hub, hub_settings, client):
    _commands(hub)
    db = sqlite3.connect(hub.directory / HUB_DB)
    with db:
        db.execute("""UPDATE audit SET detail = '{"description":"group b","group":"z"}'
                      WHERE seq = 2""")
    result = verify_chain(hub.store)
    assert not result["ok"] and result["bad_seq"] == 2
    assert "changed after it was written" in result["problem"]
    reader = bearer(token(hub_settings, "auditor", "hub:read"))
    answer = client.get("/v1/audit/verify", headers=reader).json()
    assert answer["ok"] is False and answer["bad_seq"] == 2


def test_verify_catches_a_removed_or_relinked_row(hub):
    _commands(hub)
    db = sqlite3.connect(hub.directory / HUB_DB)
    with db:
        db.execute("DELETE FROM audit WHERE seq = 2")
    result = verify_chain(hub.store)
    assert not result["ok"] and "record 2 is missing" in result["problem"]
    with db:
        db.execute("UPDATE audit SET seq = 2 WHERE seq = 3")
    result = verify_chain(hub.store)
    assert not result["ok"] and "does not follow record 1" in result["problem"]
