"""The device identity: private key files (or keys derived from a plugin's box key) and
report signatures the hub can verify."""

from __future__ import annotations

import os

import pytest

from appliance.errors import ConfigError
from appliance.sync.identity import load_identity, verify


def test_keys_are_private_files_made_once(tmp_path):
    first = load_identity(tmp_path)
    again = load_identity(tmp_path)
    assert first.signing_public == again.signing_public
    assert first.encryption_public == again.encryption_public
    sync = tmp_path / "sync"
    assert oct(sync.stat().st_mode & 0o777) == "0o700"
    for name in ("device.ed25519.pem", "device.x25519.pem"):
        assert oct((sync / name).stat().st_mode & 0o777) == "0o600"


def test_a_signature_verifies_over_the_exact_bytes_only(tmp_path):
    identity = load_identity(tmp_path)
    signature = identity.sign(b'{"seq":1}')
    assert verify(identity.signing_public, b'{"seq":1}', signature)
    assert not verify(identity.signing_public, b'{"seq":2}', signature)
    assert not verify(load_identity(tmp_path / "other").signing_public, b'{"seq":1}',
                      signature)
    assert not verify(identity.signing_public, b'{"seq":1}', "not base64!")


def test_a_plugin_box_key_derives_the_keys_and_writes_none(tmp_path):
    box_key = os.urandom(32)
    derived = load_identity(tmp_path, lambda: box_key)
    assert derived.derived
    assert derived.signing_public == load_identity(tmp_path, lambda: box_key).signing_public
    assert derived.signing_public != load_identity(tmp_path, lambda: os.urandom(32)
                                                   ).signing_public
    assert not (tmp_path / "sync" / "device.ed25519.pem").exists()


def test_a_box_that_never_enrolled_is_told_to_enrol(tmp_path):
    with pytest.raises(ConfigError, match="appliance sync enroll"):
        load_identity(tmp_path, create=False)


def test_a_key_file_readable_by_others_is_refused(tmp_path):
    load_identity(tmp_path)
    (tmp_path / "sync" / "device.ed25519.pem").chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_identity(tmp_path)
