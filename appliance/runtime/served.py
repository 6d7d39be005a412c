"""One version as this process serves it: its record, state, loaded model and execution."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..backend import LoadedModel
from ..registry import VersionRecord
from ..signature import TensorSpec
from .execution import Execution

__all__ = ["ServedVersion"]


@dataclass
class ServedVersion:
    record: VersionRecord
    state: str = "loading"  # loading | ready | failed | unloaded
    reason: str = ""
    model: LoadedModel | None = None
    backend: str = ""
    inline: bool = False
    variant: str = ""
    notes: list[str] = field(default_factory=list)
    warmup: dict[str, Any] = field(default_factory=dict)
    inputs: dict[str, TensorSpec] = field(default_factory=dict)
    outputs: dict[str, TensorSpec] = field(default_factory=dict)
    #: response headers for every answer of this version (Deprecation, Sunset, Link)
    headers: dict[str, str] = field(default_factory=dict)
    execution: Execution | None = None  # set once ready
    #: seconds to load, seconds to warm up, resident-set growth meanwhile (loading.py)
    load_s: float = 0.0
    warmup_s: float = 0.0
    memory_bytes: int = 0
    #: monitoring.counters.VersionStats, bound on the first request (monitoring/recorder.py)
    metrics: Any = None

    @classmethod
    def for_record(cls, record: VersionRecord) -> ServedVersion:
        return cls(record, inputs={s.name: s for s in record.inputs},
                   outputs={s.name: s for s in record.outputs})

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"state": self.state, "backend": self.backend,
                                "variant": self.variant, "inline": self.inline}
        if self.notes:
            info["notes"] = self.notes
        if self.reason:
            info["reason"] = self.reason
        if self.model is not None:
            info.update(self.model.metadata())
        if self.warmup:
            info["warmup"] = self.warmup
        if self.execution is not None:
            info.update(self.execution.describe())
        return info

    def release(self) -> None:
        """Stop executing and free the runtime (unload)."""
        if self.execution is not None:
            self.execution.close()
            self.execution = None
        if self.model is not None:
            self.model.close()
            self.model = None
