"""An air-gapped install as an operator does it: `appliance bundle build` for this
machine, install.sh under a temporary root in a network namespace with no network, then
`appliance serve` from that install, in a network namespace of its own with only a
loopback, answers the demo model; a second install.sh keeps the data, the configuration
and the one service user."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from sklearn.datasets import load_breast_cancer
from test_serve_process import free_port

pytestmark = pytest.mark.timeout(900)  # a cold pip cache downloads ~100 MB once


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance.cli", *args], capture_output=True,
                          text=True)


def offline(*cmd: str) -> subprocess.CompletedProcess[str]:
    """``cmd`` in a new network namespace: no interface but a loopback that is down."""
    return subprocess.run(["unshare", "--net", *cmd], capture_output=True, text=True)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> tuple[Path, dict]:
    """The bundle for this machine (extras cpu), unpacked: (its directory, build info)."""
    out = tmp_path_factory.mktemp("bundle")
    proc = cli("bundle", "build", str(out / "host.tar"), "--extras", "cpu", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    info = json.loads(proc.stdout)
    with tarfile.open(info["path"]) as tar:
        tar.extractall(out, filter="tar")
    return out / info["top"], info


@pytest.fixture(scope="module")
def installed(bundle, tmp_path_factory) -> Path:
    """The root the bundle was installed under, offline."""
    if shutil.which("unshare") is None or offline("true").returncode != 0:
        pytest.skip("cannot make a network namespace here (unshare --net is not permitted)")
    root = tmp_path_factory.mktemp("root")
    proc = install(bundle[0], root)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return root


def install(bundle_dir: Path, root: Path) -> subprocess.CompletedProcess[str]:
    return offline(str(bundle_dir / "install.sh"), "--root", str(root),
                   "--python", sys._base_executable)


@pytest.fixture
def server(installed, tmp_path) -> Iterator[Callable[..., tuple[int, str]]]:
    """`appliance serve` from the installed venv, data under the root, in a network
    namespace whose only interface is loopback; a function that sends it a request."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("APPLIANCE_", "PYTHON"))}
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen(
            ["unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
             str(installed / "opt/appliance/bin/appliance"), "--config",
             str(installed / "etc/appliance/appliance.toml"), "serve", "--port", str(port),
             "--data-dir", str(installed / "var/lib/appliance"), "--demo"],
            env=env, cwd=tmp_path, stderr=err)

    def request(path: str, body: dict | None = None) -> tuple[int, str]:
        # unshare and sh exec, so proc.pid is the server, inside the namespace
        return in_netns(proc.pid, f"http://127.0.0.1:{port}{path}", body)

    try:
        deadline = time.monotonic() + 60
        while request("/v2/health/ready")[0] != 200:
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "server not ready in 60 s"
            time.sleep(0.2)
        links = subprocess.run(["nsenter", f"--target={proc.pid}", "--net", "ip", "-o", "link"],
                               capture_output=True, text=True).stdout
        assert [line.split(": ")[1] for line in links.splitlines()] == ["lo"], links
        yield request
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)


CLIENT = """import sys, urllib.error, urllib.request
data = sys.stdin.buffer.read() or None
req = urllib.request.Request(sys.argv[1], data, {"Content-Type": "application/json"})
try:
    answer = urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as refused:
    answer = refused
print(answer.status)
sys.stdout.write(answer.read().decode())
"""


def in_netns(pid: int, url: str, body: dict | None = None) -> tuple[int, str]:
    """GET ``url`` (POST when there is a ``body``) from the network namespace of ``pid``:
    (status, text); status 0 when nothing answers there."""
    done = subprocess.run(["nsenter", f"--target={pid}", "--net", sys.executable, "-c", CLIENT,
                           url], input=json.dumps(body) if body else "", capture_output=True,
                          text=True, timeout=30)
    if done.returncode != 0:
        return 0, done.stderr
    status, _, text = done.stdout.partition("\n")
    return int(status), text


def test_bundle_holds_wheelhouse_profiles_unit_and_install_script(bundle):
    top, info = bundle
    for name in ("install.sh", "bundle.env", "SHA256SUMS", "constraints.txt",
                 "appliance.service", "appliance.example.toml", "sysusers.d/appliance.conf",
                 "tmpfiles.d/appliance.conf", "profiles/x86_64-avx512-vnni.toml"):
        assert (top / name).is_file(), name
    assert os.access(top / "install.sh", os.X_OK)
    wheels = {w.split("-")[0].lower() for w in info["wheels"]}
    assert {"appliance", "onnxruntime", "numpy", "magika", "pip"} <= wheels
    assert "openvino" not in wheels  # only the extras asked for
    assert info["libc_floor"].startswith("glibc 2.")


def test_offline_install_serves_the_demo_model(server):
    x, y = load_breast_cancer(return_X_y=True)
    body = {"inputs": [{"name": "input", "shape": [8, 30], "datatype": "FP32",
                        "data": x[:8].astype(np.float32).ravel().tolist()}],
            "outputs": [{"name": "label"}]}
    status, text = server("/v2/models/breast_cancer/infer", body)
    assert status == 200, text
    labels = np.array(json.loads(text)["outputs"][0]["data"])
    assert (labels == y[:8]).mean() >= 0.75


def test_install_creates_user_config_data_dir_and_unit_under_the_root(installed):
    [user] = [line.split(":") for line in (installed / "etc/passwd").read_text().splitlines()
              if line.startswith("appliance:")]
    data = (installed / "var/lib/appliance").stat()
    assert stat.S_IMODE(data.st_mode) == 0o750
    assert (data.st_uid, data.st_gid) == (int(user[2]), int(user[3]))
    assert (installed / "etc/appliance/appliance.toml").is_file()
    assert (installed / "etc/systemd/system/appliance.service").is_file()
    # --root installs the unit but enables nothing
    assert not (installed / "etc/systemd/system/multi-user.target.wants").exists()


def test_second_install_upgrades_in_place_and_keeps_data_config_and_user(bundle, installed):
    config = installed / "etc/appliance/appliance.toml"
    config.write_text(config.read_text() + "# edited by the operator\n")
    marker = installed / "var/lib/appliance/kept"
    marker.write_text("data")
    proc = install(bundle[0], installed)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "user appliance exists" in proc.stdout and "kept" in proc.stdout
    assert config.read_text().endswith("# edited by the operator\n")
    assert marker.read_text() == "data"
    for db in ("passwd", "group"):
        lines = (installed / "etc" / db).read_text().splitlines()
        assert sum(line.startswith("appliance:") for line in lines) == 1, db
    version = subprocess.run([str(installed / "opt/appliance/bin/appliance"), "--version"],
                             capture_output=True, text=True)
    assert version.returncode == 0 and "0.1.0" in version.stdout


def test_bundle_for_a_platform_without_wheels_is_refused_naming_package_and_platform(
        tmp_path):
    proc = cli("bundle", "build", str(tmp_path / "ppc.tar"), "--platform",
               "manylinux_2_28_ppc64le", "--extras", "cpu")
    assert proc.returncode == 1
    assert "error: no wheel of " in proc.stderr
    assert "for platform manylinux_2_28_ppc64le" in proc.stderr
    assert not (tmp_path / "ppc.tar").exists()
