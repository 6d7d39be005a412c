"""Monitoring: what the request path records, and what reads it off the path.

    settings.py   ``[metrics]`` (MetricsSettings)
    counters.py   per-version, per-traffic-class counters and bucket arrays (request path)
    recorder.py   RequestMonitor: the data plane's one entry point (request path)
    collector.py  the prometheus_client Collector that aggregates at scrape time
    readiness.py  which production versions count as failed (``/v2/health/ready``)
    health.py     ``/v1/health``: ok | degraded | failing, health sources
    probe.py      the recovery probe of failing versions (a thread)

Drift and alerting live in their own packages and contribute to health through
``HealthReport.add_health_source``. docs/monitoring.md maps the metrics to Triton's.
"""
