"""Monitoring settings, ``[metrics]`` in the TOML file (``Settings.metrics``).

    [metrics]
    enabled = true                  # GET /metrics and request-path recording
    server_timing = true            # Server-Timing: queue;dur=…, compute;dur=… (ms)
    buckets_ms = [1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500]
    failing_after_errors = 5        # consecutive backend errors that fail a version
    retry_failing_s = 5.0          # how often a failing version is re-tried
    disk_free_min_mb = 512          # below this the box is failing (GET /v1/health)

    [metrics.models.bc]
    buckets_ms = [0.05, 0.1, 0.25, 0.5, 1, 2]

With ``enabled = false`` there is no ``/metrics`` route and nothing is recorded per
request; health, readiness and the failing-version rule still work (they cost nothing
on a successful request).
"""

from __future__ import annotations

import msgspec

from ..errors import ConfigError

#: request, queue and compute histogram bounds in ms (Prometheus' defaults, shifted down:
#: a CPU model on this box answers in 0.05-50 ms)
DEFAULT_BUCKETS_MS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0,
                      500.0, 1000.0, 2500.0, 10000.0)
#: batch-size histogram bounds (rows)
DEFAULT_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class ModelMetrics(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``[metrics.models.<name>]``: one model's histogram bounds."""

    buckets_ms: list[float] = msgspec.field(default_factory=list)


class MetricsSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    enabled: bool = True
    server_timing: bool = True
    buckets_ms: list[float] = msgspec.field(default_factory=lambda: list(DEFAULT_BUCKETS_MS))
    batch_buckets: list[int] = msgspec.field(
        default_factory=lambda: list(DEFAULT_BATCH_BUCKETS))
    failing_after_errors: int = 5
    retry_failing_s: float = 5.0
    disk_free_min_mb: int = 512
    models: dict[str, ModelMetrics] = msgspec.field(default_factory=dict)

    def bounds_s(self, model: str) -> tuple[float, ...]:
        """The histogram bounds of ``model`` in seconds (its own, else the default)."""
        own = self.models.get(model)
        ms = own.buckets_ms if own is not None and own.buckets_ms else self.buckets_ms
        return tuple(b / 1000 for b in ms)

    def check(self) -> None:
        """ConfigError naming the first bad value."""
        lists = [("metrics.buckets_ms", self.buckets_ms),
                 ("metrics.batch_buckets", [float(b) for b in self.batch_buckets])]
        lists += [(f"metrics.models.{name}.buckets_ms", m.buckets_ms)
                  for name, m in self.models.items() if m.buckets_ms]
        for where, bounds in lists:
            if not bounds or any(b <= 0 for b in bounds) or any(
                    a >= b for a, b in zip(bounds, bounds[1:], strict=False)):
                raise ConfigError(f"{where} must be a non-empty list of positive, strictly "
                                  f"increasing bounds; got {bounds}")
        if self.failing_after_errors < 1:
            raise ConfigError("metrics.failing_after_errors must be at least 1")
        if not self.retry_failing_s > 0:
            raise ConfigError("metrics.retry_failing_s must be positive")
