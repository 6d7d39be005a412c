"""Hardware discovery against faked /proc and /sys trees, and profile matching."""

from __future__ import annotations

import json
import logging
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

from appliance import hookimpl
from appliance.errors import ConfigError
from appliance.hardware import (
    BUNDLED_PROFILE_DIR,
    HardwareFacts,
    collect_plugin_facts,
    discover,
    format_report,
    hardware_report,
    load_profiles,
    match_profile,
    resolve_threads,
)
from appliance.plugins import get_plugin_manager

GiB = 2**30
BUNDLED = ["generic-aarch64", "generic-x86_64", "intel-igpu-npu", "jetson-orin",
           "nvidia-discrete-gpu", "raspberry-pi-5", "x86_64-avx2", "x86_64-avx512-vnni"]
X86_BASE = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ssse3 sse4_1 sse4_2"
XEON = ("processor\t: 0\nvendor_id\t: GenuineIntel\n"
        "model name\t: Intel(R) Xeon(R) Gold 6338 CPU @ 2.00GHz\n"
        f"flags\t\t: {X86_BASE} avx avx2 fma avx512f avx512dq avx512bw avx512_vnni "
        "amx_tile amx_bf16 amx_int8\n\nprocessor\t: 1\nflags\t\t: fpu\n")
CORE_I5 = ("processor\t: 0\nmodel name\t: Intel(R) Core(TM) Ultra 5 125H\n"
           f"flags\t\t: {X86_BASE} avx avx2 fma avx_vnni\n")
OLD_X86 = f"processor\t: 0\nmodel name\t: QEMU Virtual CPU version 2.5+\nflags\t\t: {X86_BASE}\n"
ARM_FEATURES = "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp asimddp"
PI5_CPUINFO = (f"processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: {ARM_FEATURES}\n"
               "CPU implementer\t: 0x41\nCPU part\t: 0xd0b\n\n"
               "Revision\t: d04170\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n")
ORIN_CPUINFO = f"processor\t: 0\nFeatures\t: {ARM_FEATURES}\nCPU part\t: 0xd42\n"


def fake_root(tmp_path: Path, files: dict[str, str]) -> Path:
    """A directory standing in for / with ``files`` (path -> content) under it."""
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    for rel, content in files.items():
        path = root / rel.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def no_nvidia(argv: Sequence[str], timeout: float) -> str:
    raise FileNotFoundError("nvidia-smi")


def fake_nvidia(lines: str):
    calls: list[tuple[list[str], float]] = []

    def run(argv: Sequence[str], timeout: float) -> str:
        calls.append((list(argv), timeout))
        return lines

    run.calls = calls  # type: ignore[attr-defined]
    return run


def facts_for(tmp_path: Path, files: dict[str, str], *, machine: str = "x86_64",
              run=no_nvidia, extra=None, cores: int = 8, memory: int = 16 * GiB) -> HardwareFacts:
    return discover(extra, root=fake_root(tmp_path, files), run=run, machine=machine,
                    cores=cores, memory_bytes=memory)


@pytest.fixture(scope="module")
def profiles():
    loaded = load_profiles()
    assert loaded.warnings == []
    return loaded


# --- discovery -------------------------------------------------------------------------

def test_avx512_vnni_box(tmp_path, profiles):
    facts = facts_for(tmp_path, {"/proc/cpuinfo": XEON}, machine="AMD64")
    assert facts.arch == "x86_64"
    assert facts.cpu_model.startswith("Intel(R) Xeon(R) Gold 6338")
    assert {"avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8"} <= set(facts.cpu_flags)
    assert facts.nvidia_gpus == [] and not facts.is_jetson and facts.board_model is None
    assert (facts.effective_cores, facts.effective_memory_bytes) == (8, 16 * GiB)
    match = match_profile(facts, profiles)
    assert match.profile.name == "x86_64-avx512-vnni"
    assert "x86_64-avx512-vnni" in match.reasons[0]
    assert any(r.startswith("not intel-igpu-npu") for r in match.reasons)
    assert any("x86_64-avx2 also matches" in r for r in match.reasons)
    assert [c.name for c in match.candidates][:3] == [
        "x86_64-avx512-vnni", "x86_64-avx2", "generic-x86_64"]


def test_plain_x86_matches_generic(tmp_path, profiles):
    facts = facts_for(tmp_path, {"/proc/cpuinfo": OLD_X86})
    match = match_profile(facts, profiles)
    assert match.profile.name == "generic-x86_64"
    assert any("not x86_64-avx2" in r and "CPU lacks avx2, fma" in r for r in match.reasons)


def test_raspberry_pi_5(tmp_path, profiles):
    facts = facts_for(tmp_path, {"/proc/cpuinfo": PI5_CPUINFO,
                                 "/proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\x00"},
                      machine="aarch64", cores=4, memory=8 * GiB)
    assert facts.board_model == "Raspberry Pi 5 Model B Rev 1.0"
    assert facts.cpu_model == "ARM Cortex-A76"
    assert {"asimd", "neon", "asimddp"} <= set(facts.cpu_flags)
    assert not facts.is_jetson
    match = match_profile(facts, profiles)
    assert match.profile.name == "raspberry-pi-5"
    assert match.profile.prefer.backends["tflite"][0] == "litert"
    assert match.profile.prefer.precision[0] == "int8"
    assert resolve_threads(match.profile, facts) == 4


def test_jetson_orin_even_when_nvidia_smi_answers(tmp_path, profiles):
    run = fake_nvidia("Orin (nvgpu), [N/A], 8.7, 540.4.0\n")
    facts = facts_for(tmp_path, {"/proc/cpuinfo": ORIN_CPUINFO,
                                 "/etc/nv_tegra_release": "# R36 (release), REVISION: 4.0\n",
                                 "/proc/device-tree/model": "NVIDIA Jetson AGX Orin Developer Kit"},
                      machine="aarch64", run=run)
    assert facts.is_jetson and facts.cpu_model == "ARM Cortex-A78AE"
    assert facts.nvidia_gpus[0].memory_mb is None  # [N/A] on Jetson
    match = match_profile(facts, profiles)
    assert match.profile.name == "jetson-orin"
    assert match.profile.prefer.precision[0] == "fp16"
    assert match.profile.prefer.backends["onnx"][0] == "onnxruntime-cuda"
    assert any("not nvidia-discrete-gpu" in r and "Jetson" in r for r in match.reasons)


def test_jetson_from_model_alone(tmp_path):
    facts = facts_for(tmp_path, {"/sys/firmware/devicetree/base/model": "NVIDIA Jetson Xavier NX"},
                      machine="arm64")
    assert facts.is_jetson and facts.arch == "aarch64"


def test_nvidia_box(tmp_path, profiles):
    run = fake_nvidia("NVIDIA H200, 143771, 9.0, 565.57.01\nNVIDIA L4, 23034, 8.9, 565.57.01\n")
    facts = facts_for(tmp_path, {"/proc/cpuinfo": XEON}, run=run)
    assert run.calls == [(["nvidia-smi", "--query-gpu=name,memory.total,compute_cap,"
                           "driver_version", "--format=csv,noheader,nounits"], 5.0)]
    assert [g.name for g in facts.nvidia_gpus] == ["NVIDIA H200", "NVIDIA L4"]
    gpu = facts.nvidia_gpus[0]
    assert (gpu.memory_mb, gpu.compute_capability, gpu.driver) == (143771, "9.0", "565.57.01")
    match = match_profile(facts, profiles)
    assert match.profile.name == "nvidia-discrete-gpu"
    assert match.profile.prefer.backends["onnx"][:2] == ["onnxruntime-cuda", "onnxruntime"]


def test_old_driver_without_compute_cap(tmp_path):
    def run(argv: Sequence[str], timeout: float) -> str:
        if "compute_cap" in argv[1]:
            raise subprocess.CalledProcessError(2, list(argv), "Field compute_cap is not valid")
        return "Tesla T4, 15360, 470.82.01\n"

    gpu = facts_for(tmp_path, {}, run=run).nvidia_gpus[0]
    assert (gpu.name, gpu.memory_mb, gpu.compute_capability, gpu.driver) == (
        "Tesla T4", 15360, None, "470.82.01")


@pytest.mark.parametrize("error", [FileNotFoundError("nvidia-smi"), PermissionError("denied"),
                                   subprocess.TimeoutExpired(["nvidia-smi"], 5),
                                   RuntimeError("driver/library version mismatch")])
def test_failing_nvidia_smi_means_no_gpus(tmp_path, error):
    def run(argv: Sequence[str], timeout: float) -> str:
        raise error

    assert facts_for(tmp_path, {}, run=run).nvidia_gpus == []


def test_missing_nvidia_smi_with_the_real_runner(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no nvidia-smi anywhere
    facts = discover(root=fake_root(tmp_path, {}))
    assert facts.nvidia_gpus == []


def test_cgroup_v2_limits(tmp_path):
    facts = facts_for(tmp_path, {"/sys/fs/cgroup/cpu.max": "150000 100000\n",
                                 "/sys/fs/cgroup/memory.max": f"{2 * GiB}\n"})
    assert facts.cpu_quota_cores == 1.5 and facts.memory_limit_bytes == 2 * GiB
    assert facts.cores == 8 and facts.effective_cores == 1
    assert facts.memory_bytes == 16 * GiB and facts.effective_memory_bytes == 2 * GiB


def test_cgroup_v2_max_means_no_limit(tmp_path):
    facts = facts_for(tmp_path, {"/sys/fs/cgroup/cpu.max": "max 100000\n",
                                 "/sys/fs/cgroup/memory.max": "max\n"})
    assert facts.cpu_quota_cores is None and facts.memory_limit_bytes is None
    assert (facts.effective_cores, facts.effective_memory_bytes) == (8, 16 * GiB)


def test_cgroup_v2_nested_tightest_ancestor_wins(tmp_path):
    facts = facts_for(tmp_path, {"/proc/self/cgroup": "0::/kubepods/pod1/ctr\n",
                                 "/sys/fs/cgroup/kubepods/pod1/ctr/cpu.max": "max 100000",
                                 "/sys/fs/cgroup/kubepods/pod1/cpu.max": "400000 100000",
                                 "/sys/fs/cgroup/kubepods/pod1/memory.max": str(3 * GiB),
                                 "/sys/fs/cgroup/kubepods/memory.max": str(6 * GiB)})
    assert facts.cpu_quota_cores == 4.0 and facts.effective_cores == 4
    assert facts.effective_memory_bytes == 3 * GiB


def test_cgroup_v1_limits(tmp_path):
    facts = facts_for(tmp_path, {
        "/proc/self/cgroup": "4:memory:/docker/abc\n2:cpu,cpuacct:/docker/abc\n0::/\n",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_quota_us": "200000\n",
        "/sys/fs/cgroup/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": f"{GiB}\n"})
    assert facts.cpu_quota_cores == 2.0 and facts.effective_cores == 2
    assert facts.memory_limit_bytes == GiB and facts.effective_memory_bytes == GiB


def test_cgroup_v1_unlimited(tmp_path):
    facts = facts_for(tmp_path, {
        "/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "-1\n",
        "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000\n",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes": "9223372036854771712\n"})
    assert facts.cpu_quota_cores is None and facts.memory_limit_bytes is None


def test_edgetpu_devices(tmp_path):
    facts = facts_for(tmp_path, {"/dev/apex_0": "",
                                 "/sys/bus/usb/devices/2-1/idVendor": "18d1\n",
                                 "/sys/bus/usb/devices/2-1/idProduct": "9302\n",
                                 "/sys/bus/usb/devices/1-1/idVendor": "1d6b\n",
                                 "/sys/bus/usb/devices/1-1/idProduct": "0002\n"})
    assert facts.edgetpu[0] == "/dev/apex_0"
    assert len(facts.edgetpu) == 2 and "18d1:9302" in facts.edgetpu[1]


def test_unreadable_and_garbage_files_are_absent_facts(tmp_path):
    root = fake_root(tmp_path, {"/sys/fs/cgroup/cpu.max": "lots of cpu",
                                "/sys/fs/cgroup/memory.max": "-5",
                                "/proc/self/cgroup": "garbage\n::\n",
                                "/proc/device-tree/model/x": ""})  # model is a directory
    (root / "proc" / "cpuinfo").mkdir()  # reading a directory fails
    facts = discover(root=root, run=no_nvidia, machine="riscv64", cores=2, memory_bytes=GiB)
    assert facts.arch == "riscv64" and facts.cpu_flags == [] and facts.cpu_model == ""
    assert facts.cpu_quota_cores is None and facts.memory_limit_bytes is None
    assert facts.board_model is None and facts.effective_cores == 2


def test_no_profile_matches_uses_builtin_default(tmp_path, profiles):
    facts = facts_for(tmp_path, {}, machine="riscv64")
    match = match_profile(facts, profiles)
    assert match.profile.name == "builtin-default"
    assert "no hardware profile matches" in match.reasons[0]


# --- plugin contributions ----------------------------------------------------------------

class OpenVinoFacts:
    @hookimpl
    def appliance_hardware_facts(self):
        return {"openvino_devices": ["CPU", "GPU.0"], "openvino_version": "2026.4"}


class NpuFacts:
    @hookimpl
    def appliance_hardware_facts(self):
        return {"openvino_devices": ["CPU", "NPU"]}


class BrokenFacts:
    @hookimpl
    def appliance_hardware_facts(self):
        raise RuntimeError("driver crashed")


def test_plugin_facts_merge_and_intel_igpu(tmp_path, profiles, caplog):
    pm = get_plugin_manager(autoload=False, extra=(OpenVinoFacts(), BrokenFacts(), NpuFacts()))
    with caplog.at_level(logging.WARNING):
        extra = collect_plugin_facts(pm)
    assert "driver crashed" in caplog.text and len(extra) == 2
    facts = facts_for(tmp_path, {"/proc/cpuinfo": CORE_I5}, extra=extra)
    assert sorted(facts.accelerators["openvino_devices"]) == ["CPU", "GPU.0", "NPU"]
    assert facts.accelerators["openvino_version"] == "2026.4"
    match = match_profile(facts, profiles)
    assert match.profile.name == "intel-igpu-npu"
    assert match.profile.prefer.backends["onnx"][0] == "openvino"
    assert "GPU" in match.profile.prefer.openvino.device


# --- profile files -------------------------------------------------------------------------

def test_all_bundled_profiles_parse(profiles):
    assert profiles.names() == BUNDLED
    for p in profiles:
        assert Path(p.source).stem == p.name and p.description
        assert set(p.prefer.backends) <= {"onnx", "openvino", "tflite"}
        for names in p.prefer.backends.values():
            assert set(names) <= {"onnxruntime", "onnxruntime-cuda", "openvino", "litert"}
    assert {p.stem for p in BUNDLED_PROFILE_DIR.glob("*.toml")} == set(BUNDLED)


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD = 'name = "good"\n[match]\narch = ["x86_64"]\n[prefer]\nthreads = 2\n'


def test_toml_syntax_error_names_the_file(tmp_path):
    bad = write(tmp_path, "broken.toml", 'name = "broken"\n[match\narch = ["x86_64"]\n')
    with pytest.raises(ConfigError, match="not valid TOML") as err:
        load_profiles([], strict_paths=[bad])
    assert str(bad) in err.value.message


@pytest.mark.parametrize(("text", "key", "what"), [
    ('name = "x"\n[match]\nflags_all = ["avx2"]\n', "match.flags_all", "unknown key"),
    ('name = "x"\n[prefer]\nthreads = "four"\n', "prefer.threads", "Expected `int`"),
    ('name = "x"\n[match]\narch = "x86_64"\n', "match.arch", "Expected `array`"),
    ('name = "x"\n[prefer]\nthreads = -1\n', "prefer.threads", ">= 0"),
    ('name = "x"\ncolour = "red"\n', "colour", "unknown key"),
    ('description = "no name"\n', "name", "required key is missing"),
    ('name = "x"\n[prefer.openvino]\nperformance_hint = "FAST"\n',
     "prefer.openvino.performance_hint", "Invalid enum value"),
    ('name = "x"\n[prefer]\nprecision = ["fp16", "fp16"]\n', "prefer.precision", "twice"),
    ('name = "x"\n[prefer.backends]\nonnx = ["openvino", 3]\n', "prefer.backends.onnx",
     "non-empty list of names"),
    ('name = "x"\n[prefer]\nbackends = { tflite = [] }\n', "prefer.backends.tflite",
     "non-empty list of names"),
    ('name = "x"\n[prefer]\nbackends = { onnx = ["openvino", "openvino"] }\n',
     "prefer.backends.onnx", "listed twice"),
])
def test_invalid_profile_names_file_and_key(tmp_path, text, key, what):
    bad = write(tmp_path, "bad.toml", text)
    with pytest.raises(ConfigError) as err:
        load_profiles([], strict_paths=[bad])
    msg = err.value.message
    assert str(bad) in msg and f": {key}" in msg and what in msg, msg


def test_unknown_key_lists_known_keys(tmp_path):
    bad = write(tmp_path, "bad.toml", 'name = "x"\n[match]\ngpu = true\n')
    with pytest.raises(ConfigError, match="known keys here: arch, cpu_flags_all, nvidia_gpu"):
        load_profiles([], strict_paths=[bad])


def test_broken_bundled_profile_is_skipped_with_warning(tmp_path, caplog):
    d = tmp_path / "profiles"
    d.mkdir()
    write(d, "good.toml", GOOD)
    write(d, "bad.toml", 'name = "bad"\n[prefer]\nthreads = "many"\n')
    with caplog.at_level(logging.WARNING, logger="appliance.hardware.profiles"):
        loaded = load_profiles([d])
    assert loaded.names() == ["good"]
    assert len(loaded.warnings) == 1 and "bad.toml" in loaded.warnings[0]
    assert "bad.toml" in caplog.text
    with pytest.raises(ConfigError, match="prefer.threads"):
        load_profiles([], strict_paths=[d])  # the same directory named explicitly


def test_missing_paths(tmp_path):
    loaded = load_profiles([tmp_path / "nowhere"])
    assert list(loaded) == [] and "does not exist" in loaded.warnings[0]
    with pytest.raises(ConfigError, match="does not exist"):
        load_profiles([], strict_paths=[tmp_path / "nowhere.toml"])


def test_user_profile_replaces_bundled_one(tmp_path):
    mine = write(tmp_path, "mine.toml", 'name = "generic-x86_64"\n[prefer]\nthreads = 3\n')
    loaded = load_profiles(strict_paths=[mine])
    assert loaded.names() == BUNDLED
    generic = next(p for p in loaded if p.name == "generic-x86_64")
    assert generic.prefer.threads == 3 and generic.source == str(mine)


def test_fallback_without_conditions_and_ties_by_name(tmp_path):
    d = tmp_path / "p"
    d.mkdir()
    write(d, "any.toml", 'name = "any"\n')
    write(d, "b.toml", 'name = "b"\n[match]\narch = ["x86_64"]\n')
    write(d, "a.toml", 'name = "a"\n[match]\nmin_memory_gb = 1\n')
    write(d, "z.toml", 'name = "z"\n[match]\nmin_memory_gb = 64\njetson = false\n')
    loaded = load_profiles([d])
    facts = facts_for(tmp_path, {})
    match = match_profile(facts, loaded)
    assert match.profile.name == "a"
    assert any("b also matches" in r and "the name decides" in r for r in match.reasons)
    assert any(r.startswith("not z") and "16.0 GiB memory" in r for r in match.reasons)
    facts = facts_for(tmp_path, {}, machine="riscv64", memory=GiB // 2)
    match = match_profile(facts, loaded)
    assert match.profile.name == "any" and "generic fallback" in match.reasons[0]


# --- overrides -------------------------------------------------------------------------------

def test_override_by_name(tmp_path, profiles):
    facts = facts_for(tmp_path, {"/proc/cpuinfo": XEON})
    match = match_profile(facts, profiles, override="raspberry-pi-5")
    assert match.profile.name == "raspberry-pi-5" and match.overridden
    assert "chosen by override" in match.reasons[0]
    assert "x86_64-avx512-vnni" in match.reasons[0]
    assert any("does not hold here" in r for r in match.reasons)


def test_unknown_override_lists_known_names(tmp_path, profiles):
    facts = facts_for(tmp_path, {})
    with pytest.raises(ConfigError, match="unknown hardware profile 'pi6'") as err:
        match_profile(facts, profiles, override="pi6")
    assert all(name in err.value.message for name in BUNDLED)


def test_prefer_overrides_are_deep_merged(tmp_path, profiles):
    facts = facts_for(tmp_path, {"/proc/cpuinfo": XEON})
    match = match_profile(facts, profiles, overrides={
        "backends": {"onnx": ["openvino"]}, "openvino": {"device": "GPU"}, "instances": 2})
    prefer = match.profile.prefer
    assert prefer.backends["onnx"] == ["openvino"]
    assert prefer.backends["tflite"] == ["litert", "openvino"]  # untouched
    assert (prefer.openvino.device, prefer.openvino.performance_hint) == ("GPU", "LATENCY")
    assert resolve_threads(match.profile, facts) == 4  # 8 effective cores / 2 instances
    with pytest.raises(ConfigError, match="prefer.instances"):
        match_profile(facts, profiles, overrides={"instances": 0})
    with pytest.raises(ConfigError, match="prefer.threadz: unknown key"):
        match_profile(facts, profiles, overrides={"threadz": 1})


def test_resolve_threads_caps_at_effective_cores(tmp_path, profiles):
    pi = next(p for p in profiles if p.name == "raspberry-pi-5")
    facts = facts_for(tmp_path, {"/sys/fs/cgroup/cpu.max": "200000 100000"}, machine="aarch64")
    assert facts.effective_cores == 2 and resolve_threads(pi, facts) == 2


# --- report and the real machine ---------------------------------------------------------

def test_report_is_json_and_readable(tmp_path, profiles):
    facts = facts_for(tmp_path, {"/proc/cpuinfo": XEON, "/sys/fs/cgroup/cpu.max": "150000 100000"},
                      run=fake_nvidia("NVIDIA H200, 143771, 9.0, 565.57.01\n"))
    report = hardware_report(facts, match_profile(facts, profiles))
    again = json.loads(json.dumps(report))
    assert again["profile"] == "nvidia-discrete-gpu" and again["threads"] == 1
    assert again["facts"]["nvidia_gpus"][0]["compute_capability"] == "9.0"
    text = format_report(again)
    for expected in ("nvidia-discrete-gpu", "NVIDIA H200 (143771 MiB, compute 9.0",
                     "1.5 CPUs", "avx512_vnni", "onnx: onnxruntime-cuda > onnxruntime"):
        assert expected in text, text


def test_discover_on_this_machine(profiles):
    facts = discover()
    assert facts.arch and facts.arch == facts.arch.lower()
    assert facts.cores >= 1 and 1 <= facts.effective_cores <= facts.cores
    assert facts.memory_bytes > 0 and 0 < facts.effective_memory_bytes <= facts.memory_bytes
    for gpu in facts.nvidia_gpus:
        assert gpu.name
    report = hardware_report(facts, match_profile(facts, profiles))
    json.dumps(report)
    if facts.arch in ("x86_64", "aarch64"):
        assert report["profile"] in BUNDLED
    assert format_report(report)
