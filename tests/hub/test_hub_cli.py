"""`appliance hub ...`: init, groups, tokens, trust, publish, assign, devices, audit,
export and serve, as an operator runs them."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import httpx
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hub_helpers import built_package, public_pem

from appliance.cli import main


def run(*args: str):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_operator_workflow_from_init_to_assignment(tmp_path):
    hub_dir = str(tmp_path / "hub")
    assert run("hub", "init", hub_dir).exit_code == 0
    again = run("hub", "init", hub_dir, "--json")
    assert again.exit_code == 1 and "already holds a hub" in json.loads(again.output)["error"]
    assert run("hub", "groups", "add", "lab", "--dir", hub_dir).exit_code == 0
    listed = json.loads(run("hub", "groups", "list", "--dir", hub_dir, "--json").output)
    assert [g["name"] for g in listed] == ["lab"]

    issued = run("hub", "enroll-token", "--group", "lab", "--ttl", "1h", "--dir", hub_dir,
                 "--json")
    assert issued.exit_code == 0 and len(json.loads(issued.output)["token"]) >= 43

    key = Ed25519PrivateKey.generate()
    (tmp_path / "ci.pub.pem").write_bytes(public_pem(key))
    trusted = run("hub", "trust-publisher", str(tmp_path / "ci.pub.pem"), "--name", "ci",
                  "--dir", hub_dir)
    assert trusted.exit_code == 0, trusted.output
    package = built_package(tmp_path, key)
    published = run("hub", "publish", str(package), "--dir", hub_dir, "--by", "ci", "--json")
    assert published.exit_code == 0, published.output
    assert json.loads(published.output)["target_path"] == "packages/scale/1/scale-1.tar.enc"
    missing = run("hub", "assign", "lab", "scale", "7", "--stage", "production", "--dir",
                  hub_dir)
    assert missing.exit_code == 1 and "holds no package of scale version 7" in missing.output
    assigned = run("hub", "assign", "lab", "scale", "1", "--stage", "production", "--dir",
                   hub_dir, "--by", "bob")
    assert assigned.exit_code == 0 and "0 device(s)" in assigned.output
    assert json.loads(run("hub", "devices", "--dir", hub_dir, "--json").output) == []

    verified = run("hub", "audit-verify", "--dir", hub_dir, "--json")
    assert verified.exit_code == 0 and json.loads(verified.output)["records"] == 5

    minted = run("hub", "token", "issue", "--sub", "alice", "--scope", "hub:operate",
                 "--dir", hub_dir, "--json")
    claims = json.loads(minted.output)
    assert claims["iss"] == claims["aud"] == "appliance-hub"
    assert claims["scope"] == "hub:operate"


def test_commands_on_a_directory_without_a_hub_say_to_init(tmp_path):
    result = run("hub", "devices", "--dir", str(tmp_path / "none"))
    assert result.exit_code == 1 and "appliance hub init" in result.output


def test_hub_serve_answers_on_the_port_it_prints(tmp_path):
    hub_dir = tmp_path / "hub"
    assert run("hub", "init", str(hub_dir)).exit_code == 0
    env = {**os.environ, "APPLIANCE_HUB_DIR": str(hub_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "appliance.cli", "hub", "serve",
                             "--port", "0", "--log-level", "warning"],
                            env=env, stderr=subprocess.PIPE, text=True)
    try:
        line = proc.stderr.readline() if proc.stderr else ""
        port = re.search(r":(\d+)$", line.strip())
        assert port, line
        url = f"http://127.0.0.1:{port.group(1)}"
        deadline = time.monotonic() + 20
        while True:
            try:
                answer = httpx.get(url + "/v1/health/live", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "hub serve did not answer"
                time.sleep(0.1)
        assert answer.json() == {"status": "live"}
        root = httpx.get(url + "/repo/metadata/root.json", timeout=5)
        assert root.status_code == 200 and root.content == (
            hub_dir / "repo" / "metadata" / "root.json").read_bytes()
        assert httpx.get(url + "/v1/devices", timeout=5).status_code == 401
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        if proc.stderr:
            proc.stderr.close()
