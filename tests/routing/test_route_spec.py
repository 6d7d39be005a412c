"""A route as ``appliance.routing.operations`` takes it: a 400 for a body that cannot be a
route, a 409 for a version that cannot answer, a 412 for a stale ETag, and an event in
the registry (and from there the audit chain) for every change."""

from __future__ import annotations

import json

import pytest

from appliance.audit.bridge import bridge_events
from appliance.audit.checkpoints import verify
from appliance.audit.log import AuditLog
from appliance.errors import BadRequest, Conflict, NotFound
from appliance.lifecycle.promotion import promote
from appliance.routing import operations
from appliance.routing.store import PreconditionFailed

WEIGHTED = {"policy": "weighted", "weights": {"1": 70, "2": 30}}


def put(registry, body, **kw):
    kw.setdefault("actor", "alice")
    return operations.put(registry, "m", body, **kw)


def route_events(registry):
    return [(actor, action, json.loads(detail)) for actor, action, detail in
            registry.db.execute("SELECT actor, action, detail FROM events WHERE model = 'm' "
                                "AND action LIKE 'route.%' ORDER BY id").fetchall()]


def refused(registry, body, error, **kw):
    """The put is refused with ``error``, and nothing is stored or recorded."""
    with pytest.raises(error) as caught:
        put(registry, body, **kw)
    assert caught.value.status == error.status
    assert operations.describe(registry, "m")["route"] is None
    assert route_events(registry) == []
    return caught.value.message


# -- 400: the body cannot be a route ---------------------------------------------------

def test_weights_not_summing_to_100_are_a_400_saying_the_sum(model):
    message = refused(model, {"policy": "weighted", "weights": {"1": 70, "2": 20}},
                      BadRequest)
    assert message == "route: weights must sum to 100, got 90 (1: 70, 2: 20)"


def test_a_weight_outside_0_to_100_is_a_400_naming_the_version(model):
    message = refused(model, {"policy": "weighted", "weights": {"1": 120, "2": -20}},
                      BadRequest)
    assert "weights['1'] must be a number from 0 to 100, got 120" in message


def test_a_weighted_route_without_weights_is_a_400_with_an_example(model):
    message = refused(model, {"policy": "weighted"}, BadRequest)
    assert "needs `weights`" in message and '{"1": 70, "2": 30}' in message


def test_an_unknown_field_is_a_400_naming_it(model):
    message = refused(model, {**WEIGHTED, "colour": "red"}, BadRequest)
    assert "colour" in message and "docs/routing.md" in message


def test_an_unknown_policy_is_a_400_naming_the_field(model):
    message = refused(model, {"policy": "round-robin", "weights": {"1": 100}}, BadRequest)
    assert "policy" in message


def test_a_json_body_that_is_not_json_is_a_400(model):
    refused(model, b'{"policy": "weighted", "weights": ', BadRequest)


@pytest.mark.parametrize(("steps", "why"), [
    ([5, 25, 50], "does not end at 100"),
    ([25, 5, 100], "falls"),
    ([5, 5, 100], "repeats a step"),
    ([0, 50, 100], "starts at 0"),
    ([5, 150], "goes past 100"),
    ([], "is empty"),
])
def test_a_canary_step_plan_that_is_not_rising_to_100_is_a_400(model, steps, why):
    message = refused(model, {"policy": "canary", "candidate": "2", "steps": steps},
                      BadRequest)
    assert "canary steps must be percents rising strictly" in message, why
    assert f"got {[float(s) for s in steps]}" in message


def test_a_canary_without_a_candidate_or_against_itself_is_a_400(model):
    assert "needs `candidate`" in refused(model, {"policy": "canary"}, BadRequest)
    message = refused(model, {"policy": "canary", "candidate": "1"}, BadRequest)
    assert "candidate and baseline are the same version" in message


def test_a_canary_interval_out_of_range_is_a_400(model):
    message = refused(model, {"policy": "canary", "candidate": "2", "interval_s": 0},
                      BadRequest)
    assert "interval_s must be a number from 1 to 86400" in message


def test_sticky_with_more_than_one_key_source_is_a_400_listing_them(model):
    body = {"policy": "sticky", "weights": {"1": 90, "2": 10},
            "sticky": {"header": "X-User-Id", "subject": True}}
    message = refused(model, body, BadRequest)
    assert message == ("route: sticky takes exactly one key source: `header`, `subject` or "
                       "`parameter` (got header, subject)")


def test_sticky_without_a_key_source_is_a_400(model):
    body = {"policy": "sticky", "weights": {"1": 90, "2": 10}}
    assert "a sticky route needs `sticky`" in refused(model, body, BadRequest)
    message = refused(model, {**body, "sticky": {}}, BadRequest)
    assert "exactly one key source" in message and "(got none)" in message


def test_a_sticky_header_name_that_cannot_be_a_header_is_a_400(model):
    body = {"policy": "sticky", "weights": {"1": 90, "2": 10},
            "sticky": {"header": "X User\n"}}
    message = refused(model, body, BadRequest)
    assert "sticky header must be 1-128 letters, digits, '-' or '_'" in message


def test_an_unknown_sticky_field_is_a_400(model):
    body = {"policy": "sticky", "weights": {"1": 90, "2": 10},
            "sticky": {"header": "X-User-Id", "cookie": "uid"}}
    assert "cookie" in refused(model, body, BadRequest)


# -- 409: a version that cannot answer --------------------------------------------------

def test_a_version_not_loaded_in_the_server_is_a_409(model):
    message = refused(model, WEIGHTED, Conflict, ready={"1"})
    assert message == ("m version 2 is not loaded in this server; check appliance models "
                       "show m")


def test_the_same_route_is_stored_when_every_version_is_loaded(model):
    stored = put(model, WEIGHTED, ready={"1", "2", "3"})
    assert stored.revision == 1 and stored.spec.weights == {"1": 70.0, "2": 30.0}


@pytest.mark.parametrize("stage", ["registered", "shadow"])
def test_a_version_outside_the_routable_stages_is_a_409_saying_how_to_promote(
        model, settings, stage):
    if stage != "registered":
        promote(model, settings, "m", "3", stage, actor="ops")
    message = refused(model, {"policy": "weighted", "weights": {"1": 50, "3": 50}}, Conflict)
    assert message == (f"m version 3 is {stage}, not routable; it must be one of canary, "
                       "deprecated, production (promote it first: appliance models promote "
                       "m 3 --to canary)")


def test_a_shadow_stage_version_may_shadow_though_it_may_not_answer(model, settings):
    promote(model, settings, "m", "3", "shadow", actor="ops")
    stored = put(model, {"policy": "shadow", "shadows": ["3"]})
    assert stored.spec.baseline == "1"  # the production version, filled in


def test_a_version_that_does_not_exist_is_a_409_listing_the_versions(model):
    message = refused(model, {"policy": "weighted", "weights": {"1": 50, "9": 50}}, Conflict)
    assert message == "m has no version '9'; versions: 1, 2, 3"


def test_a_route_for_an_unknown_model_is_a_404(model):
    with pytest.raises(NotFound):
        operations.put(model, "nope", WEIGHTED, actor="alice")


# -- 412: If-Match, and the ETag per revision ------------------------------------------

def test_etag_changes_with_every_revision_even_for_the_same_route(model):
    first = put(model, WEIGHTED)
    second = put(model, WEIGHTED)
    third = put(model, {"policy": "weighted", "weights": {"1": 50, "2": 50}})
    assert [first.revision, second.revision, third.revision] == [1, 2, 3]
    assert len({first.etag, second.etag, third.etag}) == 3
    assert operations.describe(model, "m")["etag"] == third.etag


def test_a_stale_if_match_on_set_is_a_412_and_keeps_the_newer_route(model):
    first = put(model, WEIGHTED)
    second = put(model, {"policy": "weighted", "weights": {"1": 50, "2": 50}},
                 if_match=first.etag)
    with pytest.raises(PreconditionFailed) as caught:
        put(model, {"policy": "weighted", "weights": {"1": 10, "2": 90}}, if_match=first.etag)
    assert caught.value.status == 412
    assert caught.value.message == (
        f"the route of m changed: If-Match {first.etag} but it is now {second.etag}; "
        "GET /v1/routes/m and apply your change to that")
    shown = operations.describe(model, "m")
    assert shown["etag"] == second.etag and shown["route"]["weights"] == {"1": 50, "2": 50}


def test_if_match_of_star_a_weak_tag_or_a_list_including_the_current_one_writes(model):
    first = put(model, WEIGHTED)
    second = put(model, WEIGHTED, if_match="*")
    third = put(model, WEIGHTED, if_match=f"W/{second.etag}")
    fourth = put(model, WEIGHTED, if_match=f'"0-feed", {third.etag}')
    assert [r.revision for r in (first, second, third, fourth)] == [1, 2, 3, 4]


def test_if_match_on_a_route_that_does_not_exist_yet_is_a_412(model):
    refused(model, WEIGHTED, PreconditionFailed, if_match='"1-0000000000000000"')


def test_a_stale_if_match_on_delete_is_a_412_and_keeps_the_route(model):
    first = put(model, WEIGHTED)
    second = put(model, WEIGHTED)
    with pytest.raises(PreconditionFailed) as caught:
        operations.remove(model, "m", actor="bob", if_match=first.etag)
    assert caught.value.status == 412 and second.etag in caught.value.message
    assert operations.describe(model, "m")["etag"] == second.etag
    removed = operations.remove(model, "m", actor="bob", if_match=second.etag)
    assert removed.etag == second.etag
    assert operations.describe(model, "m")["route"] is None


def test_deleting_a_route_that_is_not_there_is_a_404(model):
    with pytest.raises(NotFound, match="has no stored route"):
        operations.remove(model, "m", actor="bob")


def test_a_route_recreated_after_a_delete_does_not_take_an_old_etag(model):
    old = put(model, WEIGHTED)
    operations.remove(model, "m", actor="bob")
    new = put(model, WEIGHTED)
    assert new.etag != old.etag and new.revision > old.revision
    with pytest.raises(PreconditionFailed):  # held from before the delete: stale
        put(model, {"policy": "weighted", "weights": {"1": 10, "2": 90}}, if_match=old.etag)


# -- events and the audit chain ---------------------------------------------------------

def test_every_set_and_delete_records_an_event_with_its_actor(model):
    first = put(model, WEIGHTED, actor="alice", reason="start the test")
    second = put(model, {"policy": "weighted", "weights": {"1": 50, "2": 50}}, actor="carol")
    operations.remove(model, "m", actor="bob", reason="done")
    events = route_events(model)
    assert [(actor, action) for actor, action, _ in events] == [
        ("alice", "route.set"), ("carol", "route.set"), ("bob", "route.delete")]
    assert events[0][2]["revision"] == 1 and events[0][2]["etag"] == first.etag
    assert events[0][2]["previous"] is None and events[0][2]["reason"] == "start the test"
    assert events[0][2]["route"]["weights"] == {"1": 70.0, "2": 30.0}
    assert events[1][2]["previous"] == first.etag and events[1][2]["etag"] == second.etag
    assert events[2][2] == {"etag": second.etag, "reason": "done"}


def test_route_events_reach_the_audit_chain_with_their_actor(model, settings):
    put(model, WEIGHTED, actor="alice")
    operations.remove(model, "m", actor="bob")
    audit = AuditLog(settings.data_dir)
    try:
        assert bridge_events(model.db, audit) >= 2
        found = [(r.kind, r.actor, r.data()["model"]) for r in audit.records()
                 if r.kind.startswith("model.route.")]
        assert verify(audit).ok
    finally:
        audit.close()
    assert found == [("model.route.set", "alice", "m"), ("model.route.delete", "bob", "m")]
