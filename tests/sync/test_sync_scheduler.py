"""The scheduled sync in the serving process: added to its APScheduler with interval and
jitter when the box is enrolled, absent otherwise, and run off the request path."""

from __future__ import annotations

from helpers import make_services

from appliance.services import load_models
from appliance.sync.enroll import enroll
from appliance.sync.scheduler import JOB_ID, run_scheduled_sync
from appliance.sync.state import read_state


def test_an_enrolled_box_schedules_its_sync_with_jitter(box, hub_url, enrolment_token,
                                                        ort_plugin_manager):
    one = box()
    enroll(one.settings, hub_url, enrolment_token(), hardware={"profile": "test"})
    services = make_services(one.settings.data_dir, ort_plugin_manager, scheduler=True,
                             sync={"interval_s": 120, "jitter": 0.25})
    try:
        load_models(services, watch=False)
        job = services.scheduler.get_job(JOB_ID)
        assert job is not None
        assert job.trigger.interval.total_seconds() == 120 and job.trigger.jitter == 30
        summary = run_scheduled_sync(services)  # what the job runs, in this thread here
        assert summary is not None and summary["status"] == "ok"
        assert read_state(one.settings.data_dir).last_success_at is not None
    finally:
        services.close()


def test_a_box_that_is_not_enrolled_schedules_no_sync(tmp_path, ort_plugin_manager):
    services = make_services(tmp_path / "var", ort_plugin_manager, scheduler=True,
                             sync={"hub_url": "http://127.0.0.1:9"})
    try:
        load_models(services, watch=False)
        assert services.scheduler.get_job(JOB_ID) is None
        health = services.health.report()
        assert health["dependencies"]["hub_sync"] == {"enrolled": False, "status": "off"}
    finally:
        services.close()
