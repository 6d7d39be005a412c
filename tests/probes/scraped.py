"""``GET /metrics`` of a real server, parsed (the probe tests' copy of the monitoring
tests' helper: test directories do not import each other)."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str) -> dict[str, dict[tuple, float]]:
    """Sample name → {sorted label items: value}."""
    r = httpx.get(url + "/metrics")
    assert r.status_code == 200, r.text
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for k, v in samples.get(name, {}).items() if set(labels.items()) <= set(k)]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]
