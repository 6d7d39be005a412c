"""The wheel carries the hardware profiles (and what `bundle build` needs): installed into
a fresh venv outside the checkout, `appliance hardware` matches a bundled profile."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from helpers import ROOT

from appliance.bundle.sources import build_wheel
from appliance.hardware.profiles import bundled_profile_dir

PROFILES = sorted(p.stem for p in (ROOT / "hardware_profiles").glob("*.toml"))


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    return build_wheel(ROOT, tmp_path_factory.mktemp("dist"))


@pytest.fixture(scope="module")
def venv(tmp_path_factory, wheel) -> Path:
    """A venv outside the checkout with only the wheel installed; the dependencies
    resolve from the dev venv through a .pth file (nothing is downloaded)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys._base_executable, "-m", "venv", "--without-pip", str(venv)],
                   check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"),
                    "install", "--quiet", "--no-deps", "--no-index", str(wheel)],
                   check=True, env=clean_env())
    site = next((venv / "lib").glob("python3.*/site-packages"))
    (site / "_dev_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return venv


def clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "APPLIANCE_PROFILES_DIR", "APPLIANCE_CONFIG")}
    return {**env, "APPLIANCE_DISABLE_PLUGIN_AUTOLOAD": "1"}


def run(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(venv / "bin" / args[0]), *args[1:]], capture_output=True,
                          text=True, cwd=cwd, env=clean_env())


def test_wheel_ships_profiles_packaging_files_and_constraints(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {f"appliance/_profiles/{p}.toml" for p in PROFILES} <= names
    assert {"appliance/bundle/constraints.txt", "appliance/bundle/packaging/install.sh",
            "appliance/bundle/packaging/appliance.service",
            "appliance/bundle/packaging/appliance.example.toml",
            "appliance/bundle/packaging/sysusers.d/appliance.conf",
            "appliance/bundle/packaging/tmpfiles.d/appliance.conf"} <= names


def test_installed_wheel_runs_from_outside_the_checkout(venv, tmp_path):
    proc = run(venv, "python", "-c", "import appliance, json, sys; print(appliance.__file__); "
               "print(json.dumps(sys.path))", cwd=tmp_path)
    where, path = proc.stdout.splitlines()
    assert where.startswith(str(venv)) and str(ROOT) not in json.loads(path)


def test_installed_wheel_matches_a_bundled_profile(venv, tmp_path):
    proc = run(venv, "appliance", "hardware", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["profile"] in PROFILES and report["profile"] != "builtin-default"
    assert Path(report["source"]).parent.match("site-packages/appliance/_profiles")
    assert Path(report["source"]).is_relative_to(venv)
    assert "does not exist" not in proc.stderr


def test_installed_wheel_resolves_a_named_profile_and_lists_the_known_ones(venv, tmp_path):
    chosen = run(venv, "appliance", "hardware", "--json", "--profile", "x86_64-avx512-vnni",
                 cwd=tmp_path)
    assert chosen.returncode == 0, chosen.stderr
    assert json.loads(chosen.stdout)["profile"] == "x86_64-avx512-vnni"
    unknown = run(venv, "appliance", "hardware", "--profile", "no-such", cwd=tmp_path)
    assert unknown.returncode == 1
    assert f"known profiles: {', '.join(PROFILES)}" in unknown.stderr


def test_installed_wheel_repacks_to_the_wheel_it_came_from(venv, wheel, tmp_path):
    proc = run(venv, "python", "-c", "import sys; from pathlib import Path; from appliance."
               "bundle.sources import repack_installed; print(repack_installed(Path(sys.argv"
               "[1])))", str(tmp_path), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    original, repacked = zipfile.ZipFile(wheel), zipfile.ZipFile(proc.stdout.strip())
    assert Path(repacked.filename).name == wheel.name
    files = {n for n in original.namelist() if not n.endswith("/RECORD")}
    assert {n for n in repacked.namelist() if not n.endswith("/RECORD")} == files
    assert all(original.read(n) == repacked.read(n) for n in files)


def test_profiles_dir_env_var_wins_over_the_installed_profiles(monkeypatch, tmp_path):
    monkeypatch.setenv("APPLIANCE_PROFILES_DIR", str(tmp_path))
    assert bundled_profile_dir() == tmp_path
    monkeypatch.delenv("APPLIANCE_PROFILES_DIR")
    assert bundled_profile_dir().resolve() == (ROOT / "hardware_profiles").resolve()
