"""What this box is: CPU, memory, container limits, GPUs and accelerators.

:func:`discover` never raises: a probe whose file is missing or unreadable, or whose
command fails, leaves its fact absent (``None``, empty, ``False``). Every path is read
under ``root`` and every command goes through ``run``, so tests fake a Raspberry Pi, a
Jetson or a cgroup-limited container with a temporary directory.
"""

from __future__ import annotations

import logging
import math
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

log = logging.getLogger(__name__)
T = TypeVar("T")

#: ``run(argv, timeout_s) -> stdout``; raises (any exception) when the command fails
Runner = Callable[[Sequence[str], float], str]

NVIDIA_SMI = ["nvidia-smi", "--query-gpu=name,memory.total,compute_cap,driver_version",
              "--format=csv,noheader,nounits"]
NVIDIA_SMI_TIMEOUT_S = 5.0
#: USB (vendor, product) of Coral Edge TPU accelerators: before and after firmware load
EDGETPU_USB_IDS = {("1a6e", "089a"): "Coral USB Accelerator (bootloader)",
                   ("18d1", "9302"): "Coral USB Accelerator"}
_ARCH = {"amd64": "x86_64", "x64": "x86_64", "x86-64": "x86_64", "arm64": "aarch64",
         "armv8": "aarch64", "armv8l": "aarch64"}
_FLAG_ALIASES = {"avx512vnni": "avx512_vnni", "avx512vbmi2": "avx512_vbmi2",
                 "amx-tile": "amx_tile", "amx-bf16": "amx_bf16", "amx-int8": "amx_int8"}
#: ARM "CPU part" ids of cores found on edge boards (implementer 0x41)
_ARM_PARTS = {"0xd03": "Cortex-A53", "0xd04": "Cortex-A35", "0xd05": "Cortex-A55",
              "0xd07": "Cortex-A57", "0xd08": "Cortex-A72", "0xd09": "Cortex-A73",
              "0xd0a": "Cortex-A75", "0xd0b": "Cortex-A76", "0xd0c": "Neoverse-N1",
              "0xd40": "Neoverse-V1", "0xd41": "Cortex-A78", "0xd42": "Cortex-A78AE",
              "0xd4f": "Neoverse-V2"}
_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a page-aligned LONG_MAX
_NO_CPUINFO: tuple[str, list[str]] = ("", [])
_NO_LIMITS: tuple[float | None, int | None] = (None, None)


class NvidiaGpu(msgspec.Struct, frozen=True):
    """One GPU as ``nvidia-smi`` reports it; a field it reports as [N/A] is None."""

    name: str
    memory_mb: int | None = None
    compute_capability: str | None = None
    driver: str | None = None


class HardwareFacts(msgspec.Struct, kw_only=True):
    """Everything profiles match against. ``effective_*`` take container limits into
    account; ``accelerators`` holds what backend plugins contributed."""

    arch: str
    cpu_model: str = ""
    cpu_flags: list[str] = msgspec.field(default_factory=list)
    cores: int = 1
    memory_bytes: int = 0
    cpu_quota_cores: float | None = None
    memory_limit_bytes: int | None = None
    effective_cores: int = 1
    effective_memory_bytes: int = 0
    nvidia_gpus: list[NvidiaGpu] = msgspec.field(default_factory=list)
    edgetpu: list[str] = msgspec.field(default_factory=list)
    is_jetson: bool = False
    board_model: str | None = None
    accelerators: dict[str, Any] = msgspec.field(default_factory=dict)


def _read(path: Path) -> str | None:
    """The stripped text of ``path``, or None when it is missing or unreadable."""
    try:
        return path.read_text(encoding="utf-8", errors="replace").replace("\x00", "").strip()
    except (OSError, ValueError):
        return None


def _safe(probe: Callable[[], T], default: T) -> T:
    """``probe()``, or ``default`` (logged at debug level) when it raises anything."""
    try:
        return probe()
    except Exception as exc:
        log.debug("hardware probe failed: %s: %s", type(exc).__name__, exc)
        return default


def _sub(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def normalise_arch(machine: str) -> str:
    """``platform.machine()`` in the names profiles use (``x86_64``, ``aarch64``)."""
    m = machine.strip().lower()
    return _ARCH.get(m, m)


def _cpuinfo(root: Path) -> tuple[str, list[str]]:
    """(cpu model, normalised flags) from /proc/cpuinfo; ("", []) when unreadable."""
    fields: dict[str, str] = {}
    for line in (_read(_sub(root, "/proc/cpuinfo")) or "").splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip().lower(), value.strip())
    raw = (fields.get("flags") or fields.get("features") or "").lower().split()
    flags = {_FLAG_ALIASES.get(f, f) for f in raw}
    if "asimd" in flags:
        flags.add("neon")  # AArch64 Advanced SIMD is what 32-bit ARM calls NEON
    model = fields.get("model name") or fields.get("cpu model") or ""
    if not model and fields.get("cpu part"):
        part = fields["cpu part"].lower()
        model = f"ARM {_ARM_PARTS.get(part, 'CPU part ' + part)}"
    return model or fields.get("hardware", ""), sorted(flags)


def _host_cores() -> int:
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _host_memory() -> int:
    import psutil  # imported here: a missing psutil only loses this fact

    return int(psutil.virtual_memory().total)


def _cgroup_paths(root: Path) -> dict[str, str]:
    """controller ("" for cgroup v2) -> this process's cgroup path."""
    out: dict[str, str] = {}
    for line in (_read(_sub(root, "/proc/self/cgroup")) or "").splitlines():
        parts = line.split(":", 2)
        if len(parts) == 3:
            for controller in parts[1].split(",") if parts[1] else [""]:
                out.setdefault(controller, parts[2])
    return out


def _levels(base: Path, cgroup: str) -> list[Path]:
    """``cgroup``'s directory under ``base``, then each ancestor up to ``base`` itself."""
    parts = [p for p in cgroup.split("/") if p]
    return [base.joinpath(*parts[:i]) for i in range(len(parts), -1, -1)]


def _cgroup_limits(root: Path) -> tuple[float | None, int | None]:
    """(cpu quota in cores, memory limit in bytes) from cgroup v2 or v1; None = no limit.
    The tightest limit of the process's cgroup and its ancestors wins."""
    paths = _cgroup_paths(root)
    fs = _sub(root, "/sys/fs/cgroup")
    quotas: list[float] = []
    memory: list[str] = []
    for d in _levels(fs, paths.get("", "/")):  # v2: "max 100000" or "150000 100000"
        quota, _, period = (_read(d / "cpu.max") or "").partition(" ")
        if quota.isdigit() and period.isdigit() and int(period) > 0:
            quotas.append(int(quota) / int(period))
        memory.append(_read(d / "memory.max") or "")
    for mount in ("cpu", "cpu,cpuacct", "cpuacct,cpu"):  # v1: quota -1 = no limit
        for d in _levels(fs / mount, paths.get("cpu", "/")):
            q, p = _read(d / "cpu.cfs_quota_us") or "", _read(d / "cpu.cfs_period_us") or ""
            if q.isdigit() and p.isdigit() and int(q) > 0 and int(p) > 0:
                quotas.append(int(q) / int(p))
    memory += [_read(d / "memory.limit_in_bytes") or ""
               for d in _levels(fs / "memory", paths.get("memory", "/"))]
    limits = [int(m) for m in memory if m.isdigit() and 0 < int(m) < _UNLIMITED]
    return (min(quotas) if quotas else None), (min(limits) if limits else None)


def _default_run(argv: Sequence[str], timeout: float) -> str:
    exe = shutil.which(argv[0])
    if exe is None:
        raise FileNotFoundError(f"{argv[0]} is not on PATH")
    done = subprocess.run([exe, *argv[1:]], capture_output=True, text=True,
                          timeout=timeout, check=True)
    return done.stdout


def _nvidia_gpus(run: Runner) -> list[NvidiaGpu]:
    """GPUs from ``nvidia-smi``; [] when it is absent, fails or times out. Drivers too
    old to know ``compute_cap`` are asked again without it."""
    no_cap = [NVIDIA_SMI[0], NVIDIA_SMI[1].replace(",compute_cap", ""), NVIDIA_SMI[2]]
    for argv in (NVIDIA_SMI, no_cap):
        try:
            out = run(argv, NVIDIA_SMI_TIMEOUT_S)
        except (FileNotFoundError, subprocess.TimeoutExpired) as exc:
            log.debug("%s: %s", argv[0], exc)
            return []
        except Exception as exc:  # non-zero exit (old driver, no device): try once more
            log.debug("%s failed: %s", " ".join(argv), exc)
            continue
        gpus = []
        for line in out.splitlines():
            cells: list[str | None] = [c.strip() or None for c in line.split(",")]
            cells = [None if c and c.startswith("[") else c for c in cells]  # [N/A]
            if argv is no_cap:
                cells.insert(2, None)
            name, mem, cap, driver = (cells + [None] * 4)[:4]
            if name:
                gpus.append(NvidiaGpu(name=name, compute_capability=cap, driver=driver,
                                      memory_mb=int(float(mem)) if mem and
                                      mem.replace(".", "", 1).isdigit() else None))
        return gpus
    return []


def _edgetpu(root: Path) -> list[str]:
    """PCIe/M.2 Edge TPUs (/dev/apex_*) and USB Coral accelerators."""
    found: list[str] = []
    try:
        found += ["/" + p.relative_to(root).as_posix() for p in _sub(root, "/dev").glob("apex_*")]
        usb = sorted(_sub(root, "/sys/bus/usb/devices").glob("*"))
    except OSError:
        return sorted(found)
    for dev in usb:
        vendor, product = _read(dev / "idVendor") or "", _read(dev / "idProduct") or ""
        label = EDGETPU_USB_IDS.get((vendor, product))
        if label:
            found.append(f"usb:{dev.name} {vendor}:{product} ({label})")
    return sorted(found)


def merge_accelerators(extra: Iterable[Any] | None) -> dict[str, Any]:
    """Merge plugin contributions: lists are unioned in order, dicts updated, other
    values replaced by later ones. Anything that is not a dict is ignored."""
    merged: dict[str, Any] = {}
    for contribution in extra or ():
        if not isinstance(contribution, dict):
            continue
        for key, value in contribution.items():
            old = merged.get(key)
            if isinstance(old, list) and isinstance(value, list | tuple):
                merged[key] = old + [v for v in value if v not in old]
            elif isinstance(old, dict) and isinstance(value, dict):
                merged[key] = {**old, **value}
            else:
                merged[key] = list(value) if isinstance(value, tuple) else value
    return merged


def collect_plugin_facts(pm: Any) -> list[dict[str, Any]]:
    """Call every ``appliance_hardware_facts`` implementation one by one, so that one
    plugin that raises is logged and skipped instead of hiding the others."""
    out: list[dict[str, Any]] = []
    for impl in pm.hook.appliance_hardware_facts.get_hookimpls():
        try:
            result = impl.function()
        except Exception as exc:
            log.warning("plugin %s: appliance_hardware_facts raised %s: %s",
                        impl.plugin_name, type(exc).__name__, exc)
            continue
        if isinstance(result, dict):
            out.append(result)
    return out


def discover(extra: list[dict[str, Any]] | None = None, *, root: Path = Path("/"),
             run: Runner | None = None, machine: str | None = None,
             cores: int | None = None, memory_bytes: int | None = None) -> HardwareFacts:
    """Probe this box. ``extra`` holds plugin contributions (see
    :func:`collect_plugin_facts`); ``root``, ``run``, ``machine``, ``cores`` and
    ``memory_bytes`` replace the real /, command runner, ``platform.machine()``, CPU
    affinity and ``psutil`` memory total (for tests). Never raises."""
    model, flags = _safe(lambda: _cpuinfo(root), _NO_CPUINFO)
    host_cores = cores if cores is not None else _safe(_host_cores, 1)
    host_mem = memory_bytes if memory_bytes is not None else _safe(_host_memory, 0)
    quota, mem_limit = _safe(lambda: _cgroup_limits(root), _NO_LIMITS)
    eff_cores = host_cores if quota is None else max(1, min(host_cores, math.floor(quota)))
    eff_mem = host_mem if mem_limit is None else min(host_mem or mem_limit, mem_limit)
    board = _read(_sub(root, "/proc/device-tree/model")) or _read(
        _sub(root, "/sys/firmware/devicetree/base/model")) or None
    jetson = _safe(lambda: _sub(root, "/etc/nv_tegra_release").is_file(), False) or (
        "jetson" in (board or "").lower())
    return HardwareFacts(
        arch=normalise_arch(machine if machine is not None else platform.machine()),
        cpu_model=model, cpu_flags=flags, cores=host_cores, memory_bytes=host_mem,
        cpu_quota_cores=quota, memory_limit_bytes=mem_limit, effective_cores=eff_cores,
        effective_memory_bytes=eff_mem,
        nvidia_gpus=_safe(lambda: _nvidia_gpus(run or _default_run), []),
        edgetpu=_safe(lambda: _edgetpu(root), []), is_jetson=jetson, board_model=board,
        accelerators=_safe(lambda: merge_accelerators(extra), {}))
