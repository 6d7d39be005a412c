"""The parts of `appliance bundle build` that need no network: platform tags, the C
library a wheelhouse needs, and pip's failures turned into one message."""

from __future__ import annotations

import pytest

from appliance.bundle import BundleSpec, build_bundle, parse_target
from appliance.bundle.platforms import libc_floor, wheel_libc
from appliance.bundle.wheelhouse import explain_failure
from appliance.errors import ConfigError

# pip 26's answer when a constraint pins a package with no wheel for the target
OPENVINO_ON_AARCH64 = """\
Collecting onnxruntime==1.32.0 (from appliance==0.1.0->appliance==0.1.0)
INFO: pip is looking at multiple versions of appliance[cpu,litert,openvino] to determine \
which version is compatible with other requirements. This could take a while.

The conflict is caused by:
    appliance[cpu,litert,openvino] 0.1.0 depends on openvino==2026.4.1; extra == "openvino"
    The user requested (constraint) openvino==2026.4.1

Additionally, some packages in these conflicts have no matching distributions available \
for your environment:
    openvino

To fix this you could try to:
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/
"""
UVLOOP_ON_PPC64LE = """\
The conflict is caused by:
    appliance 0.1.0 depends on uvloop==0.23.0; sys_platform != "win32"
    The user requested (constraint) uvloop==0.23.0

Additionally, some packages in these conflicts have no matching distributions available \
for your environment:
    uvloop

"""


def test_manylinux_target_accepts_every_older_glibc_tag():
    tags = parse_target("manylinux_2_28_aarch64").pip_platforms()
    assert tags[0] == "manylinux_2_28_aarch64"
    assert "manylinux_2_17_aarch64" in tags and "manylinux2014_aarch64" in tags
    assert "manylinux_2_29_aarch64" not in tags and "manylinux1_aarch64" not in tags
    assert "manylinux1_x86_64" in parse_target("manylinux_2_28_x86_64").pip_platforms()


def test_musllinux_target_accepts_older_musl_tags():
    assert parse_target("musllinux_1_2_x86_64").pip_platforms() == [
        "musllinux_1_2_x86_64", "musllinux_1_1_x86_64", "musllinux_1_0_x86_64"]


def test_unknown_platform_tag_is_refused_with_the_supported_ones():
    with pytest.raises(ConfigError, match="manylinux_2_28_x86_64 or manylinux_2_28_aarch64"):
        parse_target("linux-x86_64")


def test_wheel_runs_on_its_oldest_tag_and_the_bundle_on_its_newest_wheel():
    numpy = "numpy-2.4.6-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl"
    uvloop = ("uvloop-0.23.0-cp311-cp311-manylinux2014_x86_64.manylinux_2_17_x86_64."
              "manylinux_2_28_x86_64.whl")
    ort = "onnxruntime-1.32.0-cp311-cp311-manylinux_2_28_x86_64.whl"
    assert wheel_libc(numpy) == (2, 27) and wheel_libc(uvloop) == (2, 17)
    assert wheel_libc("click-8.5.1-py3-none-any.whl") is None
    assert libc_floor([numpy, uvloop, ort, "click-8.5.1-py3-none-any.whl"]) == (2, 28)


def test_missing_wheel_of_an_extra_names_package_platform_and_extra():
    msg = explain_failure(OPENVINO_ON_AARCH64, target=parse_target("manylinux_2_28_aarch64"),
                          python="3.11").message
    assert msg.startswith("no wheel of openvino==2026.4.1 for platform "
                          "manylinux_2_28_aarch64 and CPython 3.11 (glibc 2.28 or older)")
    assert "leave out the extra 'openvino'" in msg and "manylinux_2_35_aarch64" in msg


def test_missing_wheel_of_a_core_dependency_says_the_platform_is_unsupported():
    msg = explain_failure(UVLOOP_ON_PPC64LE, target=parse_target("manylinux_2_28_ppc64le"),
                          python="3.11").message
    assert "no wheel of uvloop==0.23.0 for platform manylinux_2_28_ppc64le" in msg
    assert "this platform is not supported" in msg


def test_unreachable_index_is_reported_as_such():
    out = "WARNING: Retrying ... NewConnectionError('... Network is unreachable')\n"
    msg = explain_failure(out, target=parse_target("manylinux_2_28_x86_64"),
                          python="3.11").message
    assert msg.startswith("cannot reach the package index")


@pytest.mark.parametrize(("spec", "error"), [
    (BundleSpec(platform="manylinux_2_28_x86_64", python="3"), "give the target's major"),
    (BundleSpec(platform="win_amd64"), "unknown platform"),
])
def test_bad_bundle_spec_is_refused_before_anything_is_built(tmp_path, spec, error):
    with pytest.raises(ConfigError, match=error):
        build_bundle(spec, tmp_path / "b.tar")
    assert list(tmp_path.iterdir()) == []
