"""The ``[tracing]`` settings and the once-per-request sampling decision."""

from __future__ import annotations

import random

import pytest
from opentelemetry.sdk.trace.sampling import Decision, ParentBased, TraceIdRatioBased

from appliance.errors import ConfigError
from appliance.settings import load_settings
from appliance.tracing import start_tracing
from appliance.tracing.sampling import DecidedTraceIds, RootDecision, incoming_sampled
from appliance.tracing.settings import TracingSettings

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def test_tracing_is_off_by_default_and_on_once_an_endpoint_is_set():
    default = load_settings(environ={}).tracing
    assert not default.wanted() and start_tracing(default) is None
    assert default.sample_ratio == 0.001
    wanted = load_settings({"tracing": {"endpoint": "http://collector:4318/v1/traces"}},
                           environ={}).tracing
    assert wanted.wanted()
    kept = TracingSettings(endpoint="http://collector:4318/v1/traces", enabled=False)
    assert not kept.wanted() and start_tracing(kept) is None


@pytest.mark.parametrize(("section", "says"), [
    ({"sample_ratio": 1.5}, "sample_ratio"),
    ({"sample_ratio": -0.1}, "sample_ratio"),
    ({"max_queue_size": 0}, "max_queue_size"),
    ({"colour": "blue"}, "colour"),
])
def test_a_bad_tracing_value_is_a_config_error_naming_it(section, says):
    with pytest.raises(ConfigError, match=says):
        load_settings({"tracing": section}, environ={})


@pytest.mark.parametrize(("section", "says"), [
    ({"endpoint": "collector:4318"}, "http:// or https://"),
    ({"endpoint": "http://c/v1/traces", "max_queue_size": 8, "max_export_batch_size": 9},
     "max_export_batch_size"),
])
def test_a_tracing_setting_that_cannot_work_fails_at_start(section, says):
    with pytest.raises(ConfigError, match=says):
        start_tracing(TracingSettings(**section))


@pytest.mark.parametrize(("header", "sampled"), [
    (f"00-{TRACE}-{SPAN}-01", True),
    (f"00-{TRACE}-{SPAN}-03", True),
    (f"00-{TRACE}-{SPAN}-00", False),
    (f"01-{TRACE}-{SPAN}-01-future-field", True),  # a later version, read as version 00
    (f"00-{TRACE}-{SPAN}-01-extra", None),  # version 00 has exactly four fields
    (f"ff-{TRACE}-{SPAN}-01", None),
    (f"00-{'0' * 32}-{SPAN}-01", None),
    (f"00-{TRACE}-{'0' * 16}-01", None),
    (f"00-{TRACE.upper()}-{SPAN}-01", None),
    ("garbage", None),
])
def test_incoming_traceparent_decides_by_its_flag_and_is_ignored_when_malformed(header,
                                                                              sampled):
    assert incoming_sampled(header) is sampled


@pytest.mark.parametrize("ratio", [0.0, 0.001, 0.25, 1.0])
def test_the_root_decision_agrees_with_the_sdk_ratio_sampler(ratio):
    random.seed(20240611)  # the decision's random bits: a fixed draw, not a flaky one
    decision = RootDecision(ratio)
    sdk = ParentBased(root=TraceIdRatioBased(ratio))
    draws = [decision.draw() for _ in range(20000)]
    sampled = [d for d in draws if d]
    for trace_id in sampled:
        assert sdk.should_sample(None, trace_id, "infer").decision == \
            Decision.RECORD_AND_SAMPLE
    assert abs(len(sampled) / len(draws) - ratio) <= max(0.01, ratio * 0.1)
    assert all(0 < d < 1 << 128 for d in sampled)


def test_the_decided_trace_id_goes_to_the_next_root_span_only():
    ids = DecidedTraceIds()
    ids.use(0x1234)
    assert ids.generate_trace_id() == 0x1234
    assert ids.generate_trace_id() not in (0, 0x1234)
