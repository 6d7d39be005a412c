"""Decrypting a published package with the box's own key: the hub's envelope (one
ciphertext, the data key wrapped to each box in its desired state)."""

from __future__ import annotations

import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from appliance.errors import InvalidModelFile
from appliance.security.crypto_store import encrypt_file, read_header
from appliance.security.keywrap import unwrap_with_box, wrap_for_recipient
from appliance.security.trust import key_id
from appliance.sync.unwrap import unwrap_package


@pytest.fixture
def published(tmp_path):
    """(encrypted target, plaintext, a wrap for ``box``, box private key), as the hub
    publishes and assigns (appliance/hub/publish.py, rollout.py)."""
    plain = os.urandom(3 * (1 << 20) + 17)  # several chunks
    (tmp_path / "pkg.tar").write_bytes(plain)
    hub_key = os.urandom(32)
    target = tmp_path / "scale-1.tar.enc"
    encrypt_file(tmp_path / "pkg.tar", target, hub_key)
    with target.open("rb") as f:
        header = read_header(f, target.name)
    box = X25519PrivateKey.generate()
    data_key = unwrap_with_box(header, hub_key, target.name)
    wrap = wrap_for_recipient(header, data_key, box.public_key(), key_id(box.public_key()))
    return target, plain, wrap, box


def test_the_box_decrypts_with_its_wrap_and_key(published, tmp_path):
    target, plain, wrap, box = published
    out = unwrap_package(target, tmp_path / "out.tar", box, wrap=wrap,
                         expected_sha256=hashlib.sha256(plain).hexdigest())
    assert out.read_bytes() == plain


def test_another_box_key_opens_nothing_and_leaves_no_file(published, tmp_path):
    target, _, wrap, _ = published
    with pytest.raises(InvalidModelFile, match="does not unwrap"):
        unwrap_package(target, tmp_path / "out.tar", X25519PrivateKey.generate(), wrap=wrap)
    assert not (tmp_path / "out.tar").exists()


def test_without_its_wrap_the_hub_wrapped_target_is_refused(published, tmp_path):
    target, _, _, box = published
    with pytest.raises(InvalidModelFile, match="not wrapped for a recipient"):
        unwrap_package(target, tmp_path / "out.tar", box)


def test_a_tampered_ciphertext_fails_authentication(published, tmp_path):
    target, _, wrap, box = published
    data = bytearray(target.read_bytes())
    data[-100] ^= 1
    target.write_bytes(bytes(data))
    with pytest.raises(InvalidModelFile, match="fails authentication"):
        unwrap_package(target, tmp_path / "out.tar", box, wrap=wrap)
    assert not (tmp_path / "out.tar").exists()


def test_a_package_other_than_the_desired_one_is_refused(published, tmp_path):
    target, _, wrap, box = published
    with pytest.raises(InvalidModelFile, match="desired state names"):
        unwrap_package(target, tmp_path / "out.tar", box, wrap=wrap,
                       expected_sha256="0" * 64)
    assert not (tmp_path / "out.tar").exists()


def test_a_plaintext_target_is_refused(tmp_path):
    (tmp_path / "plain.tar").write_bytes(b"not encrypted")
    with pytest.raises(InvalidModelFile, match="not an encrypted package"):
        unwrap_package(tmp_path / "plain.tar", tmp_path / "out.tar",
                       X25519PrivateKey.generate())
