"""Hardware profiles (``hardware_profiles/*.toml``): which box they fit (``[match]``,
every condition given must hold) and how to run models there (``[prefer]``). Of the
matching profiles the one with the most conditions wins, ties going to the first name
alphabetically; a profile without conditions is a generic fallback."""

from __future__ import annotations

import logging
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from ..errors import ConfigError
from .facts import HardwareFacts

log = logging.getLogger(__name__)


def bundled_profile_dir() -> Path:
    """Where the shipped profiles are: ``APPLIANCE_PROFILES_DIR`` if set (e.g. in a
    container image), else the package data installed with ``appliance`` (``_profiles``,
    built from the checkout's ``hardware_profiles/``), else a checkout's directory."""
    if os.environ.get("APPLIANCE_PROFILES_DIR"):
        return Path(os.environ["APPLIANCE_PROFILES_DIR"])
    package = Path(__file__).resolve().parents[1]
    candidates = (package / "_profiles", package.parent / "hardware_profiles")
    # a missing directory is reported by the loader, naming where it looked first
    return next((d for d in candidates if d.is_dir()), candidates[0])


#: the profiles shipped with the appliance
BUNDLED_PROFILE_DIR = bundled_profile_dir()
Precision = Literal["fp32", "fp16", "bf16", "int8", "int4"]
NonNegative = Annotated[int, msgspec.Meta(ge=0)]
Names = Annotated[list[Annotated[str, msgspec.Meta(min_length=1)]], msgspec.Meta(min_length=1)]


class MatchSpec(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """Conditions on :class:`HardwareFacts`; None means "not a condition"."""

    arch: Names | None = None
    cpu_flags_all: Names | None = None
    nvidia_gpu: bool | None = None
    jetson: bool | None = None
    board_model_contains: str | None = None
    openvino_devices_any: Names | None = None
    min_memory_gb: Annotated[float, msgspec.Meta(ge=0)] | None = None


class OpenVinoPrefer(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    device: Annotated[str, msgspec.Meta(min_length=1)] = "CPU"
    performance_hint: Literal["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"] = "LATENCY"


class LiteRTPrefer(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: delegate library ("" = built-in CPU kernels / XNNPACK), e.g. "libedgetpu.so.1"
    delegate: str = ""


class Prefer(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """How to run models on a matching box."""

    #: model format -> backend names, most preferred first
    backends: dict[str, Names] = msgspec.field(default_factory=dict)
    #: acceptable model variants, most preferred first
    precision: list[Precision] = msgspec.field(default_factory=lambda: ["fp32"])
    #: intra-op threads per instance; 0 = effective cores / instances
    threads: NonNegative = 0
    instances: Annotated[int, msgspec.Meta(ge=1)] = 1
    gpu_mem_limit_mb: NonNegative = 0
    #: a model pinned to a GPU backend on a box without one: run it on the CPU backends
    #: for its format (logged, shown in its metadata) or refuse to load it
    gpu_fallback: Literal["cpu", "refuse"] = "cpu"
    #: shown in `appliance hardware`; not enforced yet (a box-wide memory budget comes later)
    model_memory_cap_mb: NonNegative = 0
    openvino: OpenVinoPrefer = msgspec.field(default_factory=OpenVinoPrefer)
    litert: LiteRTPrefer = msgspec.field(default_factory=LiteRTPrefer)


class Profile(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    description: str = ""
    match: MatchSpec = msgspec.field(default_factory=MatchSpec)
    prefer: Prefer = msgspec.field(default_factory=Prefer)
    #: the file it came from (set by the loader, not read from TOML)
    source: str = ""


BUILTIN_DEFAULT = Profile(name="builtin-default", source="<built-in>", description="CPU, fp32")
_SECTIONS: dict[str, type[msgspec.Struct]] = {
    "": Profile, "match": MatchSpec, "prefer": Prefer,
    "prefer.openvino": OpenVinoPrefer, "prefer.litert": LiteRTPrefer}


def _explain(exc: msgspec.ValidationError, where: str, section: str = "") -> ConfigError:
    """Turn msgspec's message into one naming ``where`` and the dotted key."""
    msg, _, at = str(exc).replace(" | null", "").partition(" - at `$")  # no null in TOML
    key = ".".join(k for k in (section, at.rstrip("`").lstrip(".")) if k)
    field = re.fullmatch(r"Object (contains unknown|missing required) field `(.+)`", msg)
    if field:
        known = [f for f in getattr(_SECTIONS.get(key), "__struct_fields__", ()) if f != "source"]
        key = ".".join(k for k in (key, field.group(2)) if k)
        msg = (f"unknown key (known keys here: {', '.join(known)})"
               if field.group(1) == "contains unknown" else "required key is missing")
    return ConfigError(f"hardware profile {where}: {key or '(top level)'}: {msg}")


def _check_lists(prefer: Any, where: str) -> None:
    """Before conversion: name the format in ``prefer.backends`` errors (msgspec cannot)
    and refuse an entry listed twice there or in ``prefer.precision``."""
    prefer = prefer if isinstance(prefer, dict) else {}
    lists = {f"prefer.backends.{k}": v for k, v in prefer.get("backends", {}).items()} \
        if isinstance(prefer.get("backends"), dict) else {}
    for key, values in {**lists, "prefer.precision": prefer.get("precision", ["-"])}.items():
        if not (isinstance(values, list) and values and all(isinstance(v, str) and v
                                                             for v in values)):
            raise ConfigError(f"hardware profile {where}: {key}: expected a non-empty list "
                              f"of names, got {values!r}")
        if len(set(values)) != len(values):
            raise ConfigError(f"hardware profile {where}: {key}: an entry is listed twice "
                              f"in {values}")


def load_profile(path: Path) -> Profile:
    """Read and validate one profile file; ConfigError names the file and the key."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        what = "cannot be read" if isinstance(exc, OSError) else "is not valid TOML"
        raise ConfigError(f"hardware profile {path} {what}: {exc}") from None
    if "source" in data:  # set by the loader, never by the file
        raise ConfigError(f"hardware profile {path}: source: unknown key")
    _check_lists(data.get("prefer"), str(path))
    try:
        return msgspec.convert({**data, "source": str(path)}, Profile)
    except msgspec.ValidationError as exc:
        raise _explain(exc, str(path)) from None


class ProfileSet(list[Profile]):
    """Loaded profiles (a list) plus the ``warnings`` about files that were skipped."""

    def __init__(self, profiles: Iterable[Profile] = (), warnings: Iterable[str] = ()) -> None:
        super().__init__(profiles)
        self.warnings: list[str] = list(warnings)

    def names(self) -> list[str]:
        return [p.name for p in self]


def load_profiles(dirs: Iterable[Path] | None = None, *,
                  strict_paths: Iterable[Path] = ()) -> ProfileSet:
    """Every ``*.toml`` in ``dirs`` (default: the bundled ones), then ``strict_paths``
    (files or directories the user named). A broken file in ``dirs`` is skipped with a
    logged warning, kept in ``.warnings``; a broken or missing strict path raises
    ConfigError. A later profile with the same name replaces an earlier one."""
    by_name: dict[str, Profile] = {}
    warnings: list[str] = []
    sources = [(d, False) for d in ((BUNDLED_PROFILE_DIR,) if dirs is None else dirs)]
    for base, strict in sources + [(p, True) for p in strict_paths]:
        if not base.exists():
            if strict:
                raise ConfigError(f"hardware profile path {base} does not exist")
            warnings.append(f"hardware profile directory {base} does not exist")
            continue
        for path in sorted(base.glob("*.toml")) if base.is_dir() else [base]:
            try:
                p = load_profile(path)
            except ConfigError as exc:
                if strict:
                    raise
                warnings.append(f"skipped: {exc.message}")
                continue
            if p.name in by_name:
                log.info("profile %r from %s replaces %s", p.name, path, by_name[p.name].source)
            by_name[p.name] = p
    for w in warnings:
        log.warning("%s", w)
    return ProfileSet(sorted(by_name.values(), key=lambda p: p.name), warnings)


class Candidate(msgspec.Struct, kw_only=True):
    """How one profile fares against the facts: each condition, passed or failed."""

    name: str
    matched: bool
    specificity: int  # how many conditions it sets
    passed: list[str]
    failed: list[str]


class Match(msgspec.Struct, kw_only=True):
    profile: Profile
    reasons: list[str]
    #: every profile, best first: matching ones by specificity, then the rest
    candidates: list[Candidate]
    overridden: bool = False


def _conditions(m: MatchSpec, f: HardwareFacts) -> list[tuple[bool, str]]:
    """(holds, explanation) for each condition ``m`` sets."""
    out: list[tuple[bool, str]] = []
    if m.arch is not None:
        out.append((f.arch in m.arch, f"arch {f.arch} {'is' if f.arch in m.arch else 'is not'}"
                    f" one of {', '.join(m.arch)}"))
    if m.cpu_flags_all is not None:
        lacking = [x for x in m.cpu_flags_all if x not in set(f.cpu_flags)]
        out.append((not lacking, f"CPU lacks {', '.join(lacking)}" if lacking
                    else f"CPU has {', '.join(m.cpu_flags_all)}"))
    if m.nvidia_gpu is not None:
        gpus = ", ".join(g.name for g in f.nvidia_gpus)
        out.append((bool(gpus) == m.nvidia_gpu, f"NVIDIA GPU: {gpus or 'none found'}, wanted "
                    f"{'one' if m.nvidia_gpu else 'none'}"))
    if m.jetson is not None:
        out.append((f.is_jetson == m.jetson, f"{'a' if f.is_jetson else 'not a'} Jetson, "
                    f"wanted {'a Jetson' if m.jetson else 'no Jetson'}"))
    if m.board_model_contains is not None:
        ok = m.board_model_contains.lower() in (f.board_model or "").lower()
        out.append((ok, f"board model {f.board_model or '(none)'!r} "
                    f"{'contains' if ok else 'does not contain'} {m.board_model_contains!r}"))
    if m.openvino_devices_any is not None:
        raw = f.accelerators.get("openvino_devices") or []
        devs = [str(d) for d in (raw if isinstance(raw, list | tuple) else [raw])]
        kinds = {d.split(".")[0].upper() for d in devs}  # "GPU.1" is a GPU
        ok = any(w.upper() in kinds for w in m.openvino_devices_any)
        out.append((ok, f"OpenVINO devices [{', '.join(devs)}] {'include' if ok else 'lack'}"
                    f" any of {', '.join(m.openvino_devices_any)}"))
    if m.min_memory_gb is not None:
        gb = f.effective_memory_bytes / 2**30
        out.append((gb >= m.min_memory_gb, f"{gb:.1f} GiB memory, wanted at least "
                    f"{m.min_memory_gb:g}"))
    return out


def _candidate(p: Profile, facts: HardwareFacts) -> Candidate:
    c = _conditions(p.match, facts)
    return Candidate(name=p.name, matched=all(ok for ok, _ in c), specificity=len(c),
                     passed=[t for ok, t in c if ok], failed=[t for ok, t in c if not ok])


def _deep_merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for k, v in extra.items():
        out[k] = (_deep_merge(out[k], v) if isinstance(out.get(k), dict)
                  and isinstance(v, Mapping) else v)
    return out


def _apply(profile: Profile, overrides: Mapping[str, Any]) -> Profile:
    merged = _deep_merge(msgspec.to_builtins(profile.prefer), overrides)
    _check_lists(merged, f"{profile.name} (overrides)")
    try:
        prefer = msgspec.convert(merged, Prefer)
    except msgspec.ValidationError as exc:
        raise _explain(exc, f"{profile.name} (overrides)", "prefer") from None
    return msgspec.structs.replace(profile, prefer=prefer)


def match_profile(facts: HardwareFacts, profiles: Iterable[Profile], *,
                  override: str | None = None,
                  overrides: Mapping[str, Any] | None = None) -> Match:
    """Pick the profile for ``facts``: the most specific match, or the one named by
    ``override`` (ConfigError listing the known names if there is none). ``overrides``
    is deep-merged into the chosen profile's ``[prefer]``."""
    by_name = {p.name: p for p in profiles}
    cands = sorted((_candidate(p, facts) for p in by_name.values()),
                   key=lambda c: (not c.matched, -c.specificity, c.name))
    best = next((c for c in cands if c.matched), None)
    reasons: list[str] = []
    if override is not None:
        if override not in by_name:
            raise ConfigError(f"unknown hardware profile {override!r}; known profiles: "
                              f"{', '.join(sorted(by_name)) or '(none loaded)'}")
        chosen = by_name[override]
        c = next(c for c in cands if c.name == override)
        reasons.append(f"profile {override} chosen by override" + (
            f"; the best match would be {best.name}" if best and best.name != override else ""))
        if c.failed:
            reasons.append(f"note: its [match] does not hold here: {'; '.join(c.failed)}")
    elif best is None:
        chosen = BUILTIN_DEFAULT
        reasons.append("no hardware profile matches this box; using built-in defaults "
                       "(add a profile without [match] conditions to change them)")
    else:
        chosen = by_name[best.name]
        reasons.append((f"profile {best.name} matches with {best.specificity} condition(s): "
                        + "; ".join(best.passed)) if best.passed
                       else f"profile {best.name} is the generic fallback (no conditions)")
    others = [] if override is not None else [c for c in cands if c.name != chosen.name]
    top = best.specificity if best else 0
    reasons += [f"not {c.name} ({c.specificity} conditions): {'; '.join(c.failed)}"
                for c in others if not c.matched and c.specificity > top]
    reasons += [f"{c.name} also matches but has fewer conditions ({c.specificity})"
                if c.specificity < top else f"{c.name} also matches with as many conditions "
                f"({c.specificity}); the name decides" for c in others if c.matched]
    if overrides:
        chosen = _apply(chosen, overrides)
        reasons.append(f"prefer overridden: {', '.join(sorted(overrides))}")
    return Match(profile=chosen, reasons=reasons, candidates=cands,
                 overridden=override is not None)


def resolve_threads(profile: Profile, facts: HardwareFacts) -> int:
    """Threads per instance: ``prefer.threads`` capped at the effective cores, or, when 0,
    the effective cores shared out between ``prefer.instances`` (at least 1)."""
    cores = max(1, facts.effective_cores)
    threads = profile.prefer.threads
    return min(threads, cores) if threads > 0 else max(1, cores // profile.prefer.instances)
