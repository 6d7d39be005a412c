"""``/v1/routes/{model}`` through a real server: what a route may name (400 / 409), the
ETag that keeps two operators from overwriting each other (412), going back to the
default route, and who may change a route when auth is on."""

from __future__ import annotations

from pathlib import Path

import httpx
from routed_box import Box, onnx, routed, routed_box

from appliance.cli.tokens import mint_token

WEIGHTED = {"policy": "weighted", "weights": {"1": 50, "2": 50}}


def serving_box(tmp_path: Path, **kwargs):
    """``m``: 1 production, 2 canary (both y = x), 3 registered, 4 canary but unable to
    load (its warm-up fails)."""
    return routed_box(tmp_path, [(onnx(tmp_path, 1), "production"),
                                 (onnx(tmp_path, 1), "canary"),
                                 (onnx(tmp_path, 1), "registered"),
                                 (routed(tmp_path, "cold"), "canary")], **kwargs)


def error(r: httpx.Response) -> str:
    return str(r.json()["error"])


def test_weights_not_summing_to_100_are_refused_with_400(tmp_path):
    with serving_box(tmp_path) as box:
        r = box.put_route({"policy": "weighted", "weights": {"1": 60, "2": 30}})
        assert r.status_code == 400 and "weights must sum to 100, got 90" in error(r)
        r = box.put_route({"policy": "weighted", "weights": {"1": 50, "2": 50}, "steps": "x"})
        assert r.status_code == 400
        assert box.route()["route"] is None  # nothing was stored
        assert box.events("route.set") == []


def test_routes_to_versions_that_cannot_answer_are_refused_with_409(tmp_path):
    with serving_box(tmp_path) as box:
        registered = box.put_route({"policy": "weighted", "weights": {"1": 50, "3": 50}})
        assert registered.status_code == 409
        assert "version 3 is registered, not routable" in error(registered)
        canary = box.put_route({"policy": "canary", "candidate": "3"})
        assert canary.status_code == 409
        not_loaded = box.put_route({"policy": "weighted", "weights": {"1": 50, "4": 50}})
        assert not_loaded.status_code == 409
        assert "version 4 is not loaded in this server" in error(not_loaded)
        missing = box.put_route({"policy": "bandit", "arms": ["1", "9"]})
        assert missing.status_code == 409 and "has no version '9'" in error(missing)
        unknown = box.http.put("/v1/routes/nope", json=WEIGHTED)
        assert unknown.status_code == 404
        assert box.route()["route"] is None


def test_get_returns_the_etag_and_a_stale_if_match_is_refused_with_412(tmp_path):
    with serving_box(tmp_path) as box:
        first = box.put_route(WEIGHTED)
        assert first.status_code == 200
        etag = first.headers["ETag"]
        assert etag == first.json()["etag"]
        got = box.http.get("/v1/routes/m")
        assert got.headers["ETag"] == etag == got.json()["etag"]

        second = box.put_route({"policy": "weighted", "weights": {"1": 90, "2": 10}},
                               **{"If-Match": etag})
        assert second.status_code == 200 and second.headers["ETag"] != etag
        stale = box.put_route({"policy": "weighted", "weights": {"1": 10, "2": 90}},
                              **{"If-Match": etag})
        assert stale.status_code == 412
        assert second.headers["ETag"] in error(stale)  # it says what the route is now
        stale_delete = box.http.delete("/v1/routes/m", headers={"If-Match": etag})
        assert stale_delete.status_code == 412

        now = box.route()
        assert now["etag"] == second.headers["ETag"]
        assert now["route"]["weights"] == {"1": 90.0, "2": 10.0}
        assert now["revision"] == 2


def test_delete_goes_back_to_the_default_route(tmp_path):
    with serving_box(tmp_path) as box:
        etag = box.put_route(WEIGHTED).headers["ETag"]
        assert {a.route for a in box.send(40)} == {"arm:1", "arm:2"}

        r = box.http.delete("/v1/routes/m", headers={"If-Match": etag})
        assert r.status_code == 200 and r.json()["deleted"]["etag"] == etag

        got = box.http.get("/v1/routes/m")
        assert got.json()["route"] is None and "ETag" not in got.headers
        after = box.send(20)
        assert {(a.status, a.version, a.route) for a in after} == {(200, "1", "production")}
        [deleted] = box.events("route.delete")
        assert deleted["actor"] == "api" and deleted["detail"]["etag"] == etag
        assert box.http.delete("/v1/routes/m").status_code == 404  # nothing left to delete


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def token(data_dir: Path, subject: str, *scopes: str) -> str:
    minted, _ = mint_token(data_dir, issuer="appliance-local", audience="appliance",
                           subject=subject, scopes=list(scopes), roles=[], ttl_s=600)
    return minted


def test_with_auth_on_a_route_change_records_the_tokens_subject(tmp_path):
    data_dir = tmp_path / "var"
    writer = token(data_dir, "alice", "routes:write", "models:read", "models:infer")
    reader = token(data_dir, "bob", "models:read", "models:infer")
    with serving_box(tmp_path, auth={"mode": "on"}, headers=bearer(writer)) as box:
        anonymous = httpx.put(f"{box.url}/v1/routes/m", json=WEIGHTED, timeout=30)
        assert anonymous.status_code == 401
        refused = box.put_route(WEIGHTED, **bearer(reader))
        assert refused.status_code == 403
        delete_refused = box.http.delete("/v1/routes/m", headers=bearer(reader))
        assert delete_refused.status_code == 403
        assert box.route()["route"] is None

        stored = box.put_route(WEIGHTED)
        assert stored.status_code == 200 and stored.json()["updated_by"] == "alice"
        assert {a.status for a in box.send(5)} == {200}
        deleted = box.http.delete("/v1/routes/m")
        assert deleted.status_code == 200
        assert_actors(box, "alice")


def assert_actors(box: Box, subject: str) -> None:
    """Every route event so far was recorded as ``subject``'s."""
    events = box.events("route.set") + box.events("route.delete")
    assert len(events) == 2 and {e["actor"] for e in events} == {subject}
