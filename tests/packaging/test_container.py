"""The Containerfile, read without building it: a base named by ARG BASE, a final stage
that gets only the venv, runs as uid 10001 with its data on a volume and a readiness
HEALTHCHECK, carries no secret, and a build context that leaves local state out.
packaging/container/check.sh builds and runs the image for real (by hand, or in CI where
podman can run containers); this file is its cheap half, run everywhere."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from helpers import ROOT

from appliance.cli import main
from appliance.settings import Settings

CONTAINERFILE = ROOT / "Containerfile"
IGNORE = ROOT / ".containerignore"
CHECK_SH = ROOT / "packaging" / "container" / "check.sh"
UID = "10001"


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, instruction: str) -> list[str]:
        return [a for i, a in self.instructions if i == instruction]


@dataclass
class Containerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def parse_containerfile(text: str) -> Containerfile:
    """Instructions with their continuation lines joined, comments dropped, per stage."""
    logical, current = [], ""
    for line in text.splitlines():
        if not current and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.lstrip().startswith("#"):  # a comment inside a continued instruction
            continue
        current += line.rstrip()
        if current.endswith("\\"):
            current = current[:-1] + " "
            continue
        logical.append(current.strip())
        current = ""
    parsed = Containerfile({}, [])
    for instruction in logical:
        word, _, rest = instruction.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            found = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            assert found, instruction
            parsed.stages.append(Stage(found.group(1), found.group(2)))
        elif not parsed.stages:
            assert word == "ARG", f"only ARG may come before the first FROM: {instruction}"
            name, _, default = rest.partition("=")
            parsed.global_args[name] = default
        else:
            parsed.stages[-1].instructions.append((word, rest))
    return parsed


def env_of(stage: Stage) -> dict[str, str]:
    """The stage's ENV settings (``ENV A=1 B=2`` form)."""
    env: dict[str, str] = {}
    for args in stage.args("ENV"):
        for pair in re.findall(r"(\w+)=(\S+)", args):
            env[pair[0]] = pair[1]
    return env


def containerfile() -> Containerfile:
    return parse_containerfile(CONTAINERFILE.read_text())


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_every_stage_starts_from_the_base_argument():
    cf = containerfile()
    assert cf.global_args.get("BASE"), "ARG BASE with a default, before the first FROM"
    assert [s.base for s in cf.stages] == ["${BASE}"] * len(cf.stages)
    assert len(cf.stages) == 2 and cf.stages[0].name == "build"


def test_base_advice_says_how_to_pin_by_digest():
    text = CONTAINERFILE.read_text()
    assert "@sha256:" in text and "--build-arg BASE=" in text


def test_default_extras_are_extras_of_the_package_and_pick_one_onnxruntime():
    extras = containerfile().global_args["EXTRAS"].split(",")
    optional = pyproject()["project"]["optional-dependencies"]
    assert set(extras) <= set(optional) - {"test"}
    assert not {"cpu", "cuda"} <= set(extras)  # both install the module onnxruntime


def test_final_stage_runs_as_uid_10001_created_with_that_uid():
    final = containerfile().final
    assert final.args("USER") == [f"{UID}:{UID}"]  # numeric: runAsNonRoot can check it
    [run] = [r for r in final.args("RUN") if "useradd" in r]
    assert f"--uid {UID}" in run and f"--gid {UID}" in run
    assert re.search(rf"^UID_IN_IMAGE={UID}$", CHECK_SH.read_text(), re.M)


def test_final_stage_gets_only_the_venv_from_the_build_stage():
    final = containerfile().final
    assert final.args("COPY") == ["--from=build /opt/appliance /opt/appliance"]
    assert not final.args("ADD")
    # the venv's python is the base image's python3, at the same path in both stages
    [build] = containerfile().stages[:1]
    assert any("python3 -m venv /opt/appliance" in r for r in build.args("RUN"))


def test_build_stage_copies_what_the_package_symlinks_point_at():
    copied = {source for args in containerfile().stages[0].args("COPY")
              for source in args.split()[:-1]}
    targets = set()
    for dirpath, dirnames, filenames in os.walk(ROOT / "appliance"):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve().relative_to(ROOT)
                targets.add(target.parts[0])
    assert targets >= {"hardware_profiles", "packaging", "constraints.txt"}
    assert targets <= copied, f"the wheel would miss {sorted(targets - copied)}"
    assert {"pyproject.toml", "README.md", "appliance", "plugins"} <= copied


def test_profiles_come_from_the_wheel_not_a_directory_beside_it():
    assert "APPLIANCE_PROFILES_DIR" not in CONTAINERFILE.read_text()


def test_data_dir_is_the_volume_and_every_env_setting_is_a_setting():
    final = containerfile().final
    env = env_of(final)
    assert final.args("VOLUME") == [json.dumps([env["APPLIANCE_DATA_DIR"]])]
    assert env["APPLIANCE_DATA_DIR"] == "/var/lib/appliance"
    assert any(f"-o {UID} -g {UID} -m 0750 /var/lib/appliance" in r for r in final.args("RUN"))
    assert final.args("EXPOSE") == [env["APPLIANCE_PORT"]]
    assert env["APPLIANCE_HOST"] == "0.0.0.0"  # published ports reach it
    fields = set(Settings.__struct_fields__)
    for name in env:
        if name.startswith("APPLIANCE_"):
            assert name.removeprefix("APPLIANCE_").lower() in fields, name


def test_entrypoint_and_cmd_are_a_command_the_cli_has():
    final = containerfile().final
    assert final.args("ENTRYPOINT") == ['["appliance"]']
    [cmd] = final.args("CMD")
    assert json.loads(cmd)[0] in main.commands


def test_healthcheck_asks_for_readiness_with_the_images_python():
    [check] = containerfile().final.args("HEALTHCHECK")
    assert "--start-period=" in check
    command = json.loads(check.split(" CMD ", 1)[1])  # exec form: no shell in the image
    assert command[0] == "python3" and "/v2/health/ready" in command[-1]
    assert "APPLIANCE_PORT" in command[-1]


def test_containerfile_and_check_script_carry_no_secret():
    text = CONTAINERFILE.read_text()
    assert not re.search(r"(?i)\b\w*(password|passwd|secret|token|api_?key)\w*\s*=", text)
    assert "PRIVATE KEY" not in text
    for name in ("pip.conf", ".netrc", ".pypirc", "ca.crt"):
        assert name not in text, f"{name} is mounted at build time (check.sh), never copied"
    # check.sh hands pip its CA bundle as a build-time mount, not a layer
    assert '-v "$CACHE/pip.conf:/etc/pip.conf:ro"' in CHECK_SH.read_text()


def ignored(patterns: list[str], name: str) -> bool:
    hit = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        if fnmatch.fnmatch(name, pattern.removeprefix("!").removeprefix("**/")):
            hit = not negate
    return hit


def test_context_leaves_out_local_state_and_keeps_what_the_build_copies():
    patterns = [line.strip() for line in IGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    for local in (".venv", ".git", "var", "build", "dist", "__pycache__", "x.egg-info"):
        assert ignored(patterns, local), local
    for stage in containerfile().stages:
        for args in stage.args("COPY"):
            if not args.startswith("--from="):
                for source in args.split()[:-1]:
                    assert not ignored(patterns, source), f"{source} is copied but ignored"


def test_check_script_is_valid_bash():
    done = subprocess.run(["bash", "-n", str(CHECK_SH)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
