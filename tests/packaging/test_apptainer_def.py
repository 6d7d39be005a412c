"""packaging/appliance.def, read section by section (apptainer is not packaged for Debian
and cannot be installed here, so no SIF is built): it bootstraps the same Debian as the
container check, with a Python the package supports; it installs the bundle's wheels into
the /opt/appliance venv with no index and the Containerfile's extras; it serves with a
command the CLI has, from the data directory the image uses, overridable by the user.
packaging/apptainer/check-def.sh runs the sections for real in a chroot (by hand)."""

from __future__ import annotations

import re
import subprocess

from helpers import ROOT
from packaging.specifiers import SpecifierSet
from test_container import CHECK_SH, containerfile, env_of, pyproject

from appliance.bundle import DEFAULT_EXTRAS
from appliance.cli import main
from appliance.settings import Settings

DEF = ROOT / "packaging" / "appliance.def"
VENV_APPLIANCE = "/opt/appliance/bin/appliance"
#: the python3 each Debian release ships (what `Include: python3` installs)
DEBIAN_PYTHON = {"bookworm": "3.11", "trixie": "3.13"}
#: the sections Apptainer and SingularityCE know
SECTIONS = {"arguments", "setup", "files", "post", "environment", "runscript", "startscript",
            "test", "labels", "help", "app"}


def parse_def(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """(header keywords, section name -> body) of a definition file."""
    header: dict[str, str] = {}
    sections: dict[str, str] = {}
    current: str | None = None
    for line in text.splitlines():
        found = re.match(r"^%(\w+)\b", line)
        if found:
            current = found.group(1)
            assert current not in sections, f"%{current} twice"
            sections[current] = ""
        elif current is not None:
            sections[current] += line + "\n"
        elif line.strip() and not line.startswith("#"):
            key, sep, value = line.partition(":")
            assert sep, f"not a header line: {line!r}"
            header[key.strip()] = value.strip()
    return header, sections


def definition() -> tuple[dict[str, str], dict[str, str]]:
    return parse_def(DEF.read_text())


def commands(body: str) -> str:
    """A section's shell text without its comments."""
    return "\n".join(line for line in body.splitlines()
                     if line.strip() and not line.strip().startswith("#"))


def arguments() -> dict[str, str]:
    _, sections = definition()
    return dict(line.strip().split("=", 1) for line in commands(sections["arguments"]).split()
                if "=" in line)


def environment() -> dict[str, str]:
    """APPLIANCE_* of %environment -> its default (``${NAME:-default}``)."""
    _, sections = definition()
    env = {}
    for name, value in re.findall(r"export (APPLIANCE_\w+)=(\S+)", sections["environment"]):
        found = re.fullmatch(rf"\$\{{{name}:-(.+)\}}", value)
        assert found, f"{name}={value}: the invoking user's {name} should win"
        env[name] = found.group(1)
    return env


def test_only_known_sections():
    _, sections = definition()
    assert set(sections) <= SECTIONS, set(sections) - SECTIONS
    assert {"post", "environment", "runscript", "startscript", "test"} <= set(sections)


def test_bootstraps_the_debian_the_container_check_uses():
    header, _ = definition()
    assert header["Bootstrap"] == "debootstrap"  # a Debian mirror, no container registry
    assert header["OSVersion"] == "bookworm"
    assert f' {header["OSVersion"]} "$rootfs"' in CHECK_SH.read_text()
    assert {"python3", "python3-venv"} <= set(header["Include"].split())


def test_its_python_is_one_the_package_and_the_bundle_support():
    header, _ = definition()
    python = DEBIAN_PYTHON[header["OSVersion"]]
    assert python in SpecifierSet(pyproject()["project"]["requires-python"])
    build = main.commands["bundle"].commands["build"]
    [option] = [p for p in build.params if p.name == "python"]
    assert option.default == python  # the wheels of a default bundle fit it


def test_extras_are_the_containerfiles_and_extras_of_the_package():
    extras = arguments()["EXTRAS"]
    assert extras == containerfile().global_args["EXTRAS"] == ",".join(DEFAULT_EXTRAS)
    assert set(extras.split(",")) <= set(pyproject()["project"]["optional-dependencies"])
    _, sections = definition()
    assert '"appliance[{{ EXTRAS }}]==$APPLIANCE_VERSION"' in sections["post"]


def test_post_installs_the_bundle_into_the_venv_with_no_index():
    _, sections = definition()
    post = commands(sections["post"])
    assert "python3 -m venv --without-pip /opt/appliance" in post
    installs = re.findall(r"pip\"? install[^\n]*(?:\\\n[^\n]*)*", post)
    assert len(installs) >= 3 and all("--no-index" in i for i in installs), installs
    assert "PIP_CONFIG_FILE=/dev/null" in post  # no pip.conf of the build host
    assert "sha256sum --quiet --strict -c SHA256SUMS" in post
    assert "rm -rf /opt/appliance-bundle" in post  # the wheelhouse does not stay in the SIF
    [files] = commands(sections["files"]).split("\n")
    assert files.split() == ["bundle", "/opt/appliance-bundle"]


def test_runscript_and_startscript_serve_with_a_command_the_cli_has():
    _, sections = definition()
    run = commands(sections["runscript"])
    assert "set -- serve" in run and f'exec {VENV_APPLIANCE} "$@"' in run
    assert f'exec {VENV_APPLIANCE} serve "$@"' in commands(sections["startscript"])
    assert "serve" in main.commands
    # the same venv as the container image
    assert any("python3 -m venv /opt/appliance" in r for r in containerfile().stages[0].args("RUN"))
    assert "hardware" in main.commands
    assert f"{VENV_APPLIANCE} hardware --json" in sections["test"]


def test_bind_point_is_the_data_dir_of_the_container_image():
    env = environment()
    image = env_of(containerfile().final)
    assert env["APPLIANCE_DATA_DIR"] == image["APPLIANCE_DATA_DIR"] == "/var/lib/appliance"
    assert env["APPLIANCE_PORT"] == image["APPLIANCE_PORT"]
    _, sections = definition()
    assert "install -d -m 0755 /var/lib/appliance" in sections["post"]
    assert "--bind ~/appliance-data:/var/lib/appliance" in DEF.read_text()


def test_serves_on_loopback_since_apptainer_shares_the_hosts_network():
    # no port mapping in front of it: 0.0.0.0 would expose it on every interface
    assert environment()["APPLIANCE_HOST"] == "127.0.0.1"


def test_every_environment_setting_is_a_setting():
    fields = set(Settings.__struct_fields__)
    for name in environment():
        assert name.removeprefix("APPLIANCE_").lower() in fields, name


def test_section_runner_is_valid_bash():
    script = ROOT / "packaging" / "apptainer" / "check-def.sh"
    done = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
