"""The hardware report: what was found, which profile applies and why.

:func:`hardware_report` builds a JSON-able dict (served by ``GET /v1/hardware`` and
printed by ``appliance hardware --json``); :func:`format_report` renders that dict for
people, so a client can format a report fetched from a remote appliance too.
"""

from __future__ import annotations

from typing import Any

import msgspec

from .facts import HardwareFacts
from .profiles import Match, resolve_threads

#: the CPU flags that decide which kernels and profiles apply, in display order
NOTABLE_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512bw",
                 "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16",
                 "amx_int8", "neon", "asimd", "asimddp", "asimdhp", "i8mm", "bf16", "sve",
                 "sve2")


def hardware_report(facts: HardwareFacts, match: Match) -> dict[str, Any]:
    """Facts, the chosen profile, the reasons and the resolved preferences as plain
    JSON types."""
    profile = match.profile
    flags = set(facts.cpu_flags)
    return {
        "facts": msgspec.to_builtins(facts, enc_hook=str),  # odd plugin values as text
        "notable_cpu_flags": [f for f in NOTABLE_FLAGS if f in flags],
        "profile": profile.name,
        "description": profile.description,
        "source": profile.source,
        "overridden": match.overridden,
        "reasons": list(match.reasons),
        "prefer": msgspec.to_builtins(profile.prefer),
        "threads": resolve_threads(profile, facts),
        "candidates": msgspec.to_builtins(match.candidates),
    }


def _gib(n: int | None) -> str:
    return "-" if not n else f"{n / 2**30:.1f} GiB"


def _gpu(g: dict[str, Any]) -> str:
    extra = [f"{g['memory_mb']} MiB" if g.get("memory_mb") else "",
             f"compute {g['compute_capability']}" if g.get("compute_capability") else "",
             f"driver {g['driver']}" if g.get("driver") else ""]
    details = ", ".join(e for e in extra if e)
    return f"{g.get('name', '?')}" + (f" ({details})" if details else "")


def _facts_lines(f: dict[str, Any], notable: list[str]) -> list[tuple[str, str]]:
    limits = []
    if f.get("cpu_quota_cores") is not None:
        limits.append(f"{f['cpu_quota_cores']:g} CPUs")
    if f.get("memory_limit_bytes") is not None:
        limits.append(f"{_gib(f['memory_limit_bytes'])} memory")
    accel = "; ".join(f"{k}: {', '.join(map(str, v)) if isinstance(v, list) else v}"
                      for k, v in sorted((f.get("accelerators") or {}).items()))
    return [
        ("arch", f.get("arch") or "-"),
        ("CPU", f.get("cpu_model") or "-"),
        ("cores", f"{f.get('cores')} (effective {f.get('effective_cores')})"),
        ("CPU features", " ".join(notable) or "-"),
        ("memory", f"{_gib(f.get('memory_bytes'))} "
                   f"(effective {_gib(f.get('effective_memory_bytes'))})"),
        ("container limits", ", ".join(limits) or "none"),
        ("NVIDIA GPUs", "; ".join(_gpu(g) for g in f.get("nvidia_gpus") or []) or "none"),
        ("Edge TPU", ", ".join(f.get("edgetpu") or []) or "none"),
        ("Jetson", "yes" if f.get("is_jetson") else "no"),
        ("board", f.get("board_model") or "-"),
        ("accelerators", accel or "none reported by plugins"),
    ]


def _prefer_lines(p: dict[str, Any], threads: Any) -> list[tuple[str, str]]:
    backends = "; ".join(f"{fmt}: {' > '.join(names)}"
                         for fmt, names in sorted((p.get("backends") or {}).items()))
    ov, lt = p.get("openvino") or {}, p.get("litert") or {}
    return [
        ("backends", backends or "installed order"),
        ("precision", " > ".join(p.get("precision") or []) or "-"),
        ("threads", f"{p.get('threads')} -> {threads} per instance"),
        ("instances", str(p.get("instances"))),
        ("GPU memory limit", f"{p.get('gpu_mem_limit_mb')} MiB" if p.get("gpu_mem_limit_mb")
         else "none"),
        ("model memory cap", f"{p.get('model_memory_cap_mb')} MiB"
         if p.get("model_memory_cap_mb") else "none"),
        ("OpenVINO", f"device {ov.get('device', '-')}, hint {ov.get('performance_hint', '-')}"),
        ("LiteRT", f"delegate {lt.get('delegate') or '(none: CPU/XNNPACK)'}"),
    ]


def _table(rows: list[tuple[str, str]]) -> list[str]:
    width = max((len(k) for k, _ in rows), default=0)
    return [f"  {k.ljust(width)}  {v}" for k, v in rows]


def format_report(report: dict[str, Any]) -> str:
    """The report of :func:`hardware_report` as text for a terminal."""
    lines = ["Hardware"]
    lines += _table(_facts_lines(report.get("facts") or {}, report.get("notable_cpu_flags")
                                 or []))
    how = " (override)" if report.get("overridden") else ""
    lines += ["", f"Profile: {report.get('profile')}{how}  [{report.get('source') or '-'}]"]
    if report.get("description"):
        lines.append(f"  {report['description']}")
    lines += ["", "Why"] + [f"  - {r}" for r in report.get("reasons") or []]
    lines += ["", "Preferences"]
    lines += _table(_prefer_lines(report.get("prefer") or {}, report.get("threads")))
    return "\n".join(lines)
