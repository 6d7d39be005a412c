"""Hardware discovery and profile matching.

    facts = discover(collect_plugin_facts(pm))
    match = match_profile(facts, load_profiles(strict_paths=settings.profile_dirs),
                          override=settings.profile)
    print(format_report(hardware_report(facts, match)))
"""

from __future__ import annotations

from .facts import (
    HardwareFacts,
    NvidiaGpu,
    Runner,
    collect_plugin_facts,
    discover,
    merge_accelerators,
    normalise_arch,
)
from .profiles import (
    BUILTIN_DEFAULT,
    BUNDLED_PROFILE_DIR,
    Candidate,
    LiteRTPrefer,
    Match,
    MatchSpec,
    OpenVinoPrefer,
    Prefer,
    Profile,
    ProfileSet,
    load_profile,
    load_profiles,
    match_profile,
    resolve_threads,
)
from .report import format_report, hardware_report

__all__ = [
    "BUILTIN_DEFAULT", "BUNDLED_PROFILE_DIR", "Candidate", "HardwareFacts", "LiteRTPrefer",
    "Match", "MatchSpec", "NvidiaGpu", "OpenVinoPrefer", "Prefer", "Profile", "ProfileSet",
    "Runner", "collect_plugin_facts", "discover", "format_report", "hardware_report",
    "load_profile", "load_profiles", "match_profile", "merge_accelerators", "normalise_arch",
    "resolve_threads",
]
