"""Scraping a real server's ``/metrics`` in tests."""

from __future__ import annotations

import httpx
from prometheus_client.parser import text_string_to_metric_families


def scrape(url: str, **kwargs) -> dict[str, dict[tuple, float]]:
    """``GET /metrics`` parsed: sample name → {sorted label items: value}."""
    r = httpx.get(url + "/metrics", **kwargs)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    out: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(r.text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return out


def value(samples: dict[str, dict[tuple, float]], name: str, **labels: str) -> float:
    """The one sample of ``name`` whose labels include ``labels``."""
    found = [v for k, v in samples[name].items() if set(labels.items()) <= set(k)]
    assert len(found) == 1, (name, labels, samples.get(name))
    return found[0]
