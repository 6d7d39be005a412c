"""From a matched hardware profile to what the runtime needs: backend order per format,
options per backend, and the order in which model variants are acceptable."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..hardware import HardwareFacts, Match, resolve_threads


@dataclass
class Placement:
    """How this box runs models; built once at start-up from the profile."""

    profile: str = "builtin-default"
    prefer: dict[str, list[str]] = field(default_factory=dict)
    precision: list[str] = field(default_factory=lambda: ["fp32"])
    options: dict[str, dict[str, Any]] = field(default_factory=dict)
    gpu_fallback: str = "cpu"
    instances: int = 1


def placement_for(match: Match, facts: HardwareFacts, data_dir: Path) -> Placement:
    prefer = match.profile.prefer
    threads = resolve_threads(match.profile, facts)
    fp16 = bool(prefer.precision) and prefer.precision[0] == "fp16"
    options: dict[str, dict[str, Any]] = {
        "onnxruntime": {"intra_op_threads": threads},
        "onnxruntime-cuda": {"device_id": 0, "gpu_mem_limit_mb": prefer.gpu_mem_limit_mb,
                             "fp16": fp16,
                             # a broken CUDA set-up serves on the CPU only when the profile
                             # allows it; the model's metadata then says so
                             "allow_cpu_fallback": prefer.gpu_fallback == "cpu",
                             "trt_cache_dir": str(data_dir / "cache" / "tensorrt")},
        "openvino": {"device": prefer.openvino.device,
                     "performance_hint": prefer.openvino.performance_hint,
                     "inference_num_threads": threads,
                     "cache_dir": str(data_dir / "cache" / "openvino")},
        "litert": {"num_threads": threads, "instances": prefer.instances},
    }
    if prefer.litert.delegate:
        options["litert"]["delegate"] = prefer.litert.delegate
    return Placement(profile=match.profile.name,
                     prefer={fmt: list(names) for fmt, names in prefer.backends.items()},
                     precision=list(prefer.precision), options=options,
                     gpu_fallback=prefer.gpu_fallback, instances=prefer.instances)


def variant_order(available: list[str], precision: list[str]) -> list[str]:
    """``available`` precisions in the profile's order; those it does not list come
    last (still tried, so a model is never refused only for lacking a variant)."""
    rank = {p: i for i, p in enumerate(precision)}
    return sorted(available, key=lambda p: rank.get(p, len(rank)))
