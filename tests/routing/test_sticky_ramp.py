"""A sticky route ramped 1 → 5 → 10 → 50 % to the candidate, over 100,000 user keys:
each step hands the candidate its share, nobody on the candidate is moved off it, and a
restarted server puts every key where the last one did (appliance/routing/buckets.py)."""

from __future__ import annotations

import pytest

from appliance.errors import BadRequest
from appliance.routing import operations
from appliance.routing.buckets import MAX_KEY
from appliance.routing.policies import RouteContext

USERS = [f"user-{i}" for i in range(100_000)]
RAMP = (1, 5, 10, 50)
FACTORS = {"1": 2.0, "2": 3.0}  # y = 2x and y = 3x: the answer says who answered


def sticky(candidate_percent: float) -> dict:
    return {"policy": "sticky", "weights": {"1": 100 - candidate_percent,
                                            "2": candidate_percent},
            "sticky": {"header": "X-User-Id"}}


def on_candidate(policy) -> set[str]:
    """The users the route sends to version 2."""
    decide = policy.decide
    return {user for user in USERS if decide(RouteContext(
        [(b"x-user-id", user.encode())])).served.record.version == "2"}


def route(stack):
    policy = stack.route()
    assert policy.stored
    return policy


def test_ramp_gives_the_candidate_its_share_and_never_takes_a_user_back(model, start):
    stack = start()
    shares, before = [], set()
    for percent in RAMP:
        operations.put(model, "m", sticky(percent), actor="ops",
                       ready={v for v, s in stack.repository.versions("m").items() if s.ready})
        users = on_candidate(route(stack))
        shares.append(100 * len(users) / len(USERS))
        assert shares[-1] == pytest.approx(percent, abs=0.5), (percent, shares)
        assert before <= users, f"{len(before - users)} users left the candidate at {percent}"
        before = users


def test_a_restarted_server_sends_every_user_where_the_last_one_did(model, start):
    operations.put(model, "m", sticky(10), actor="ops")
    first = start()
    was = on_candidate(route(first))
    first.close()
    again = start()  # a new process: new registry connection, repository, router
    assert again.router is not first.router
    assert on_candidate(route(again)) == was
    assert 9.5 <= 100 * len(was) / len(USERS) <= 10.5


def test_a_new_revision_of_the_same_split_keeps_every_user_in_place(model, start):
    stack = start()
    operations.put(model, "m", sticky(50), actor="ops")
    was = on_candidate(route(stack))
    operations.put(model, "m", sticky(50), actor="ops", reason="no change")
    assert on_candidate(route(stack)) == was


def test_a_new_salt_reshuffles_users_into_an_independent_half(model, start):
    stack = start()
    operations.put(model, "m", sticky(50), actor="ops")
    was = on_candidate(route(stack))
    operations.put(model, "m", {**sticky(50), "sticky": {"header": "X-User-Id",
                                                          "salt": "round-2"}}, actor="ops")
    now = on_candidate(route(stack))
    overlap = len(was & now) / len(was)
    assert 0.45 <= overlap <= 0.55  # independent halves, not the same half


def test_one_user_gets_one_version_for_every_request_of_a_sticky_route(model, start):
    stack = start()
    operations.put(model, "m", sticky(50), actor="ops")
    route(stack)
    answers = {}
    for user in ("alice", "bob", "carol", "dave", "erin", "frank"):
        seen = set()
        for _ in range(5):
            y, headers = stack.infer([(b"x-user-id", user.encode())])
            version = headers["X-Model-Version"]
            assert y == [FACTORS[version]] * 2
            assert headers["X-Route"] == f"arm:{version}"
            seen.add(version)
        assert len(seen) == 1, user
        answers[user] = seen.pop()
    assert set(answers.values()) == {"1", "2"}  # six users do not all share one half


@pytest.mark.parametrize(("value", "shown"), [
    (b"", "got ''"),
    (b"u" * (MAX_KEY + 1), "got 'uuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuuu'…"),
    (b"user\x00one", r"got 'user\x00one'"),
    (b"user\r\none", r"got 'user\r\none'"),
    (b"\x1b[31mred", r"got '\x1b[31mred'"),
])
def test_a_malformed_sticky_key_is_a_400_saying_what_a_key_must_be(model, start, value,
                                                                   shown):
    stack = start()
    operations.put(model, "m", sticky(50), actor="ops")
    policy = route(stack)
    with pytest.raises(BadRequest) as caught:
        policy.decide(RouteContext([(b"x-user-id", value)]))
    assert caught.value.status == 400
    assert caught.value.message == (f"sticky key from header X-User-Id must be 1-{MAX_KEY} "
                                    f"printable characters, {shown}")
    with pytest.raises(BadRequest, match="sticky key from header X-User-Id"):
        stack.infer([(b"x-user-id", value)])  # the data plane refuses it as well


def test_a_key_of_the_longest_length_is_accepted(model, start):
    stack = start()
    operations.put(model, "m", sticky(50), actor="ops")
    decision = route(stack).decide(RouteContext([(b"x-user-id", b"u" * MAX_KEY)]))
    assert decision.served.record.version in {"1", "2"}


def test_a_request_without_the_key_still_gets_a_version_of_the_split(model, start):
    stack = start()
    operations.put(model, "m", sticky(50), actor="ops")
    policy = route(stack)
    versions = [policy.decide(RouteContext([(b"x-other", b"1")])).served.record.version
                for _ in range(2000)]
    assert 0.45 <= versions.count("2") / len(versions) <= 0.55


def test_a_sticky_route_keyed_on_the_token_subject_keeps_each_subject_in_place(model, start):
    stack = start()
    operations.put(model, "m", {**sticky(50), "sticky": {"subject": True}}, actor="ops")
    policy = route(stack)
    for subject in ("svc-a", "svc-b", "svc-c"):
        versions = {policy.decide(RouteContext((), subject)).served.record.version
                    for _ in range(20)}
        assert len(versions) == 1
