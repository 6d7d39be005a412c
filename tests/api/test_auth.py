"""Access control: Bearer JWTs, scopes, roles, JWKS, mutual TLS and local tokens.

Real keys (cryptography), real tokens (PyJWT), a real JWKS server (http.server on
127.0.0.1) and a real appliance over HTTP and HTTPS.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import http.server
import ipaddress
import json
import os
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import appliance_onnxruntime
import httpx
import jwt
import pytest
import uvicorn
from click.testing import CliRunner
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from helpers import make_services, serve
from helpers.models import scale_model
from litestar import Litestar, get
from litestar.datastructures import State

from appliance.access.auth_settings import (
    AuthSettings,
    IssuerSettings,
    auth_enabled,
    open_warning,
)
from appliance.access.scopes import EXPORT, OPEN_IDENTITY, Identity, can_infer, require
from appliance.access.tls import uvicorn_tls_kwargs
from appliance.access.tokens import TokenValidator
from appliance.api import create_app
from appliance.api.auth import (
    MODEL_ACCESS,
    OPEN,
    ROUTE_SCOPES,
    ScopeGuard,
    requires,
)
from appliance.api.errors import EXCEPTION_HANDLERS
from appliance.cli import main
from appliance.cli.tokens import mint_token  # also registers `appliance tokens`
from appliance.errors import ConfigError, Forbidden, Unauthorized
from appliance.packages.importer import import_model
from appliance.plugins import get_plugin_manager
from appliance.testing.server import ServerThread

IDP = "https://idp.example.test"
JWKS_IDP = "https://jwks.example.test"
AUD = "appliance"
BODY = {"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 2], "data": [1, 1]}]}


# ---------------------------------------------------------------- keys and tokens


def pem(public_key: Any) -> bytes:
    return public_key.public_bytes(serialization.Encoding.PEM,
                                   serialization.PublicFormat.SubjectPublicKeyInfo)


def write_private(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module")
def idp_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def idp_pem(tmp_path_factory, idp_key) -> Path:
    path = tmp_path_factory.mktemp("idp") / "idp.pub.pem"
    path.write_bytes(pem(idp_key.public_key()))
    return path


def make_token(key: Any, alg: str = "RS256", *, iss: str = IDP, aud: str | None = AUD,
               sub: str = "alice", ttl: int = 300, kid: str | None = None,
               **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": iss, "aud": aud, "sub": sub, "iat": now, "exp": now + ttl, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key, algorithm=alg, headers={"kid": kid} if kid else None)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], claims: dict[str, Any], sign: Any = None) -> str:
    """A token put together by hand, the way an attacker would."""
    head = b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode())
    return head + "." + (b64(sign(head.encode())) if sign else "")


def claims_for(**extra: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"iss": IDP, "aud": AUD, "sub": "mallory", "iat": now, "exp": now + 300,
            "scope": "admin", **extra}


def jwk(public_key: Any, kid: str) -> dict[str, Any]:
    return {**_to_jwk(public_key), "kid": kid, "use": "sig"}


def _to_jwk(public_key: Any) -> dict[str, Any]:
    if isinstance(public_key, rsa.RSAPublicKey):
        return json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public_key))
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public_key))
    return json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(public_key))


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts its fetches."""

    def __init__(self) -> None:
        self.document = b'{"keys": []}'
        self.hits = 0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
                outer.hits += 1
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(outer.document)))
                self.end_headers()
                self.wfile.write(outer.document)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/jwks.json"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def publish(self, *keys: tuple[Any, str]) -> None:
        self.document = json.dumps({"keys": [jwk(k.public_key(), kid) for k, kid in keys]}
                                   ).encode()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    server = JwksServer()
    yield server
    server.close()


def validator_for(*issuers: IssuerSettings, **auth: Any) -> TokenValidator:
    return TokenValidator(AuthSettings(mode="on", issuers=list(issuers), **auth))


# ---------------------------------------------------------------- the validator


@pytest.fixture(scope="module")
def validator(idp_pem) -> TokenValidator:
    return validator_for(IssuerSettings(issuer=IDP, audience=AUD, pem_files=[idp_pem]),
                         roles_claim="realm_access.roles",
                         role_scopes={"scorer": ["models:infer:a"], "ops": ["models:promote"]})


def refusal(validator: TokenValidator, token: str) -> str:
    with pytest.raises(Unauthorized) as caught:
        validator.validate(token)
    return caught.value.message


def test_valid_token_gives_subject_and_scope_claim(validator, idp_key):
    identity = validator.validate(make_token(idp_key, scope="models:read models:infer:a"))
    assert identity == Identity("alice", frozenset({"models:read", "models:infer:a"}), (),
                                "jwt")


def test_pss_token_from_an_rsa_key_is_accepted(validator, idp_key):
    assert validator.validate(make_token(idp_key, "PS256", scope="models:read")).via == "jwt"


def test_expired_token_says_when_it_expired(validator, idp_key):
    message = refusal(validator, make_token(idp_key, ttl=-3600))
    assert message.startswith("token expired at ")


def test_token_expired_within_the_leeway_is_still_accepted(validator, idp_key):
    assert validator.validate(make_token(idp_key, ttl=-5, scope="models:read"))


def test_not_yet_valid_token_is_refused(validator, idp_key):
    message = refusal(validator, make_token(idp_key, nbf=int(time.time()) + 3600))
    assert "not valid before" in message and "nbf" in message


def test_token_without_exp_is_refused(validator, idp_key):
    token = jwt.encode({"iss": IDP, "aud": AUD, "sub": "alice"}, idp_key, algorithm="RS256")
    assert refusal(validator, token) == f"token has no exp claim; issuer {IDP}'s tokens need one"


def test_untrusted_issuer_is_named(validator, idp_key):
    message = refusal(validator, make_token(idp_key, iss="https://evil.test"))
    assert "issuer 'https://evil.test' is not trusted" in message and IDP in message


def test_wrong_audience_is_named(validator, idp_key):
    message = refusal(validator, make_token(idp_key, aud="another-service"))
    assert message.startswith("wrong audience 'another-service'")


def test_token_signed_by_another_key_does_not_verify(validator, other_key):
    assert refusal(validator, make_token(other_key)) == (
        f"signature does not verify with issuer {IDP}'s keys")


def test_alg_none_is_refused(validator):
    token = forged({"alg": "none", "typ": "JWT"}, claims_for())
    assert refusal(validator, token).startswith("alg none is refused")
    assert refusal(validator, forged({"alg": "None"}, claims_for())).startswith("alg none")


def test_hs256_signed_with_the_rsa_public_key_is_refused(validator, idp_pem):
    """The classic algorithm confusion: the public PEM used as an HMAC secret."""
    secret = idp_pem.read_bytes()
    token = forged({"alg": "HS256", "typ": "JWT"}, claims_for(),
                   lambda data: hmac.new(secret, data, hashlib.sha256).digest())
    message = refusal(validator, token)
    assert message == f"alg HS256 is refused for issuer {IDP}: its keys verify only PS256, RS256"


def test_ec_key_verifies_only_its_curves_algorithm(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    (tmp_path / "ec.pem").write_bytes(pem(key.public_key()))
    v = validator_for(IssuerSettings(issuer=IDP, audience=AUD, pem_files=[tmp_path / "ec.pem"]))
    assert v.validate(make_token(key, "ES256", scope="models:read")).subject == "alice"
    es384 = forged({"alg": "ES384"}, claims_for(), lambda data: b"\0" * 96)
    assert "alg ES384 is refused" in refusal(v, es384)


def test_hs256_is_accepted_only_with_an_explicit_shared_secret(tmp_path):
    secret = os.urandom(32).hex().encode()
    path = write_private(tmp_path / "secret", secret)
    v = validator_for(IssuerSettings(issuer=IDP, audience=AUD, shared_secret_file=path))
    assert v.validate(make_token(secret, "HS256", scope="models:read")).subject == "alice"
    assert "does not verify" in refusal(v, make_token(b"x" * 64, "HS256"))


def test_roles_from_a_nested_claim_map_to_scopes(validator, idp_key):
    identity = validator.validate(make_token(idp_key, realm_access={"roles": ["scorer", "x"]}))
    assert identity.roles == ("scorer", "x")
    assert identity.scopes == frozenset({"models:infer:a"})


def test_scp_list_claim_grants_scopes_and_unknown_scopes_are_dropped(validator, idp_key):
    identity = validator.validate(make_token(idp_key, scp=["models:read", "openid"]))
    assert identity.scopes == frozenset({"models:read"})


def test_a_verified_token_is_not_verified_again(validator, idp_key):
    token = make_token(idp_key, scope="models:read")
    validator.validate(token)
    assert validator.cached(token) is not None
    started = time.perf_counter()
    for _ in range(1000):
        validator.validate(token)
    assert time.perf_counter() - started < 0.05  # 1000 RSA verifications take far longer


def test_private_key_in_pem_files_is_a_config_error(tmp_path, idp_key):
    path = write_private(tmp_path / "k.pem", idp_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    with pytest.raises(ConfigError, match="holds a private key"):
        validator_for(IssuerSettings(issuer=IDP, audience=AUD, pem_files=[path]))


def test_unknown_scope_in_role_mapping_is_a_config_error(idp_pem):
    with pytest.raises(ConfigError, match="unknown scope 'models:reed'"):
        validator_for(IssuerSettings(issuer=IDP, audience=AUD, pem_files=[idp_pem]),
                      role_scopes={"r": ["models:reed"]})


def test_jwks_file_is_reread_when_rotated(tmp_path, idp_key, other_key):
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(idp_key.public_key(), "k1")]}))
    v = validator_for(IssuerSettings(issuer=IDP, audience=AUD, jwks_file=path))
    assert v.validate(make_token(idp_key, kid="k1", scope="models:read"))
    assert "no key with kid 'k2'" in refusal(v, make_token(other_key, kid="k2"))
    path.write_text(json.dumps({"keys": [jwk(idp_key.public_key(), "k1"),
                                         jwk(other_key.public_key(), "k2")]}))
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 1_000_000))
    assert v.validate(make_token(other_key, kid="k2", scope="models:read"))


def test_jwks_oct_keys_never_enable_hmac(tmp_path):
    secret = b"s" * 32
    path = tmp_path / "jwks.json"
    ed = ed25519.Ed25519PrivateKey.generate()
    path.write_text(json.dumps({"keys": [
        {"kty": "oct", "kid": "h", "k": b64(secret)}, jwk(ed.public_key(), "e")]}))
    v = validator_for(IssuerSettings(issuer=IDP, audience=AUD, jwks_file=path))
    assert v.validate(make_token(ed, "EdDSA", kid="e", scope="models:read"))
    assert "no key with kid 'h'" in refusal(v, make_token(secret, "HS256", kid="h"))


def test_jwks_url_unknown_kid_refetches_once_then_rate_limits(jwks_server, idp_key, other_key):
    jwks_server.publish((idp_key, "k1"))
    v = validator_for(IssuerSettings(issuer=JWKS_IDP, audience=AUD, jwks_url=jwks_server.url,
                                     jwks_min_refresh_s=60))
    before = jwks_server.hits
    assert v.validate(make_token(idp_key, iss=JWKS_IDP, kid="k1", scope="models:read"))
    assert jwks_server.hits == before + 1
    jwks_server.publish((idp_key, "k1"), (other_key, "k2"))  # the issuer rotates
    assert v.validate(make_token(other_key, iss=JWKS_IDP, kid="k2", scope="models:read"))
    assert jwks_server.hits == before + 2  # the unknown kid triggered one refresh
    for n in range(5):  # invented kids do not hammer the issuer
        assert "no key with kid" in refusal(v, make_token(other_key, iss=JWKS_IDP,
                                                          kid=f"bogus{n}"))
    assert jwks_server.hits == before + 2


def test_jwks_url_is_refetched_after_jwks_refresh_s(jwks_server, idp_key):
    jwks_server.publish((idp_key, "k1"))
    v = validator_for(IssuerSettings(issuer=JWKS_IDP, audience=AUD, jwks_url=jwks_server.url,
                                     jwks_refresh_s=0.2))
    before = jwks_server.hits
    v.validate(make_token(idp_key, iss=JWKS_IDP, kid="k1", scope="models:read"))
    time.sleep(0.3)
    v.validate(make_token(idp_key, iss=JWKS_IDP, kid="k1", scope="models:read", jti="2"))
    assert jwks_server.hits == before + 2


def test_plain_http_jwks_url_to_a_remote_host_is_a_config_error():
    with pytest.raises(ConfigError, match="must be https"):
        validator_for(IssuerSettings(issuer=IDP, audience=AUD,
                                     jwks_url="http://idp.example.com/jwks"))


# ---------------------------------------------------------------- scopes and modes


def test_admin_implies_every_scope_and_infer_covers_each_model():
    admin = Identity("root", frozenset({"admin"}))
    require(admin, "models:export")
    assert can_infer(Identity("s", frozenset({"models:infer"})), "anything")
    one = Identity("s", frozenset({"models:infer:a"}))
    assert can_infer(one, "a") and not can_infer(one, "b")
    with pytest.raises(Forbidden, match="s lacks the models:read scope") as caught:
        require(one, "models:read")
    assert caught.value.headers["WWW-Authenticate"] == (
        'Bearer realm="appliance", error="insufficient_scope", scope="models:read"')


def test_open_identity_may_do_everything_but_export():
    require(OPEN_IDENTITY, "models:promote")
    assert can_infer(OPEN_IDENTITY, "a")
    with pytest.raises(Forbidden, match="models:export needs credentials even while auth is off"):
        require(OPEN_IDENTITY, "models:export")


@pytest.mark.parametrize(("mode", "host", "enabled"), [
    ("auto", "127.0.0.1", False), ("auto", "::1", False), ("auto", "localhost", False),
    ("auto", "0.0.0.0", True), ("auto", "10.1.2.3", True), ("on", "127.0.0.1", True),
    ("off", "0.0.0.0", False)])
def test_auto_mode_is_on_unless_bound_to_loopback(mode, host, enabled):
    auth = AuthSettings(mode=mode)
    assert auth_enabled(auth, host) is enabled
    assert (open_warning(auth, host) is None) is enabled


def test_auth_off_on_a_network_address_warns_loudly():
    assert "ANYONE WHO CAN REACH THIS PORT" in open_warning(AuthSettings(mode="off"), "0.0.0.0")


# ---------------------------------------------------------------- the API, end to end


def plugin_manager() -> Any:
    return get_plugin_manager(autoload=False, extra=(appliance_onnxruntime,))


@pytest.fixture(scope="module")
def secured(tmp_path_factory, idp_pem, jwks_server) -> Iterator[str]:
    """An appliance with auth on, models "a" and "b", a PEM issuer and a JWKS issuer."""
    tmp = tmp_path_factory.mktemp("secured")
    services = make_services(tmp / "var", plugin_manager(), auth={
        "mode": "on",
        "issuers": [{"issuer": IDP, "audience": AUD, "pem_files": [str(idp_pem)]},
                    {"issuer": JWKS_IDP, "audience": AUD, "jwks_url": jwks_server.url,
                     "jwks_min_refresh_s": 0}],
        "role_scopes": {"reader": ["models:read"], "scorer-a": ["models:infer:a"]}})
    for name in ("a", "b"):
        import_model(services.registry, services.catalog, scale_model(tmp / f"{name}.onnx", 2),
                     name=name)
    server = serve(services)
    yield server.url
    server.stop()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def infer(url: str, model: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
    return httpx.post(f"{url}/v2/models/{model}/infer", json=BODY, timeout=30,
                      headers=bearer(token) if token else None, **kwargs)


BAD_TOKENS = {
    "expired": (lambda k, _: make_token(k, ttl=-3600, scope="admin"), "token expired at"),
    "not yet valid": (lambda k, _: make_token(k, nbf=int(time.time()) + 3600, scope="admin"),
                      "not valid before"),
    "wrong issuer": (lambda k, _: make_token(k, iss="https://evil.test", scope="admin"),
                     "is not trusted"),
    "wrong audience": (lambda k, _: make_token(k, aud="other", scope="admin"),
                       "wrong audience 'other'"),
    "wrong key": (lambda _, o: make_token(o, scope="admin"), "signature does not verify"),
    "alg none": (lambda k, _: forged({"alg": "none"}, claims_for()), "alg none is refused"),
    "garbage": (lambda k, _: "not-a-jwt", "malformed token"),
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
def test_bad_tokens_get_401_with_reason_and_challenge(secured, idp_key, other_key, case):
    make, reason = BAD_TOKENS[case]
    token = make(idp_key, other_key)
    for r in (infer(secured, "a", token),
              httpx.get(f"{secured}/v1/models", headers=bearer(token), timeout=30)):
        assert r.status_code == 401, r.text
        assert reason in r.json()["error"]
        challenge = r.headers["WWW-Authenticate"]
        assert challenge.startswith('Bearer realm="appliance", error="invalid_token", '
                                    'error_description="')
        assert reason.split("'")[0] in challenge


def test_hs256_confusion_token_gets_401(secured, idp_pem):
    secret = idp_pem.read_bytes()
    token = forged({"alg": "HS256"}, claims_for(),
                   lambda data: hmac.new(secret, data, hashlib.sha256).digest())
    r = infer(secured, "a", token)
    assert r.status_code == 401 and "alg HS256 is refused" in r.json()["error"]


def test_missing_token_gets_401_with_bare_challenge(secured):
    for r in (infer(secured, "a"), httpx.get(f"{secured}/v1/models", timeout=30),
              httpx.get(f"{secured}/v2/models/a", timeout=30)):
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Bearer realm="appliance"'
        assert "authentication required" in r.json()["error"]


def test_non_bearer_authorization_gets_401(secured):
    r = httpx.get(f"{secured}/v1/models", headers={"Authorization": "Basic YTpi"}, timeout=30)
    assert r.status_code == 401 and "Bearer <token>" in r.json()["error"]


def test_health_probes_stay_open(secured):
    assert httpx.get(f"{secured}/v2/health/live", timeout=30).status_code == 200
    assert httpx.get(f"{secured}/v2/health/ready", timeout=30).status_code == 200


def test_token_lacking_a_scope_gets_403_naming_it(secured, idp_key):
    token = make_token(idp_key, scope="models:infer")
    r = httpx.post(f"{secured}/v1/models/a/versions/1/promote", json={"to": "production"},
                   headers=bearer(token), timeout=30)
    assert r.status_code == 403
    assert r.json()["error"] == "alice lacks the models:promote scope; ask for a token that " \
                                "has it (or admin)"
    assert 'scope="models:promote"' in r.headers["WWW-Authenticate"]
    r = httpx.post(f"{secured}/v2/repository/models/a/unload", headers=bearer(token),
                   timeout=30)
    assert r.status_code == 403 and "admin" in r.json()["error"]


def test_infer_scope_for_one_model_allows_only_that_model(secured, idp_key):
    token = make_token(idp_key, scope="models:infer:a")
    assert infer(secured, "a", token).status_code == 200
    r = infer(secured, "b", token)
    assert r.status_code == 403 and "models:infer:b" in r.json()["error"]
    # the model it may infer on, it may also inspect; the other it may not
    assert httpx.get(f"{secured}/v2/models/a", headers=bearer(token), timeout=30
                     ).status_code == 200
    assert httpx.get(f"{secured}/v2/models/b", headers=bearer(token), timeout=30
                     ).status_code == 403


def test_roles_claim_maps_to_scopes(secured, idp_key):
    token = make_token(idp_key, roles=["reader", "scorer-a"])
    r = httpx.get(f"{secured}/v1/models", headers=bearer(token), timeout=30)
    assert r.status_code == 200 and {m["name"] for m in r.json()} == {"a", "b"}
    assert infer(secured, "a", token).status_code == 200
    assert infer(secured, "b", token).status_code == 403


def test_admin_token_reaches_admin_routes(secured, idp_key):
    token = make_token(idp_key, scope="admin")
    r = httpx.post(f"{secured}/v2/repository/index", headers=bearer(token), timeout=30)
    assert r.status_code == 200 and len(r.json()) == 2


def test_jwks_url_issuer_rotation_is_picked_up_by_the_server(secured, jwks_server, idp_key,
                                                             other_key):
    jwks_server.publish((idp_key, "r1"))
    assert infer(secured, "a", make_token(idp_key, iss=JWKS_IDP, kid="r1",
                                          scope="models:infer")).status_code == 200
    jwks_server.publish((other_key, "r2"))
    r = infer(secured, "a", make_token(other_key, iss=JWKS_IDP, kid="r2", scope="models:infer"))
    assert r.status_code == 200, r.text


def test_locally_issued_token_is_trusted(tmp_path):
    services = make_services(tmp_path / "var", plugin_manager(), auth={"mode": "on"})
    import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 2),
                 name="a")
    runner = CliRunner()
    result = runner.invoke(main, ["tokens", "issue", "--sub", "ci", "--scope", "models:infer:a",
                                  "--ttl", "10m", "--data-dir", str(tmp_path / "var"), "--json"],
                           env={"APPLIANCE_DATA_DIR": ""})
    assert result.exit_code == 0, result.output
    issued = json.loads(result.stdout)
    assert issued["iss"] == "appliance-local" and issued["exp"] - issued["iat"] == 600
    key = runner.invoke(main, ["tokens", "public-key", "--data-dir", str(tmp_path / "var")])
    assert key.stdout.startswith("-----BEGIN PUBLIC KEY-----")
    assert oct((tmp_path / "var" / "keys" / "tokens.ed25519.pem").stat().st_mode)[-3:] == "600"
    with ServerThread(create_app(services, load_in_background=False)) as url:
        assert infer(url, "a", issued["token"]).status_code == 200
        assert infer(url, "a").status_code == 401


def test_token_issue_refuses_unknown_scopes_and_long_ttls(tmp_path):
    runner = CliRunner()
    args = ["tokens", "issue", "--sub", "x", "--data-dir", str(tmp_path)]
    bad = runner.invoke(main, [*args, "--scope", "models:everything"])
    assert bad.exit_code == 1 and "unknown scope 'models:everything'" in bad.output
    long = runner.invoke(main, [*args, "--scope", "models:read", "--ttl", "365d"])
    assert long.exit_code == 1 and "at most 90d" in long.output


def test_auth_off_serves_everyone_as_the_open_identity(tmp_path):
    services = make_services(tmp_path / "var", plugin_manager(), auth={"mode": "off"})
    import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 2),
                 name="a")
    with ServerThread(create_app(services, load_in_background=False)) as url:
        assert infer(url, "a").status_code == 200
        assert httpx.get(f"{url}/v1/models", timeout=30).status_code == 200
        # except an export: that needs a token with models:export even now
        r = httpx.get(f"{url}/v1/models/a/versions/1/export?recipient=bob", timeout=30)
        assert r.status_code == 401 and r.headers["WWW-Authenticate"] == 'Bearer realm="appliance"'


def test_export_needs_a_token_even_while_auth_is_off(tmp_path):
    services = make_services(tmp_path / "var", plugin_manager())  # loopback: auth is off

    @get("/export", guards=[requires(EXPORT)])
    async def export() -> dict[str, str]:
        return {"ok": "yes"}

    app = Litestar([export], exception_handlers=EXCEPTION_HANDLERS,  # type: ignore[arg-type]
                   state=State({"services": services}))
    allowed, _ = mint_token(tmp_path / "var", issuer="appliance-local", audience="appliance",
                            subject="ci", scopes=["models:export"], roles=[], ttl_s=60)
    reader, _ = mint_token(tmp_path / "var", issuer="appliance-local", audience="appliance",
                           subject="ci", scopes=["models:read"], roles=[], ttl_s=60)
    try:
        with ServerThread(app) as url:
            r = httpx.get(f"{url}/export", timeout=30)
            assert r.status_code == 401 and r.headers["WWW-Authenticate"] == (
                'Bearer realm="appliance"')
            assert httpx.get(f"{url}/export", headers=bearer(reader), timeout=30
                             ).status_code == 403
            assert httpx.get(f"{url}/export", headers=bearer(allowed), timeout=30
                             ).json() == {"ok": "yes"}
    finally:
        services.close()


def test_every_route_is_guarded_as_route_scopes_says(tmp_path):
    services = make_services(tmp_path / "var", plugin_manager())
    app = create_app(services).litestar  # type: ignore[attr-defined]
    table = {(method, path): need for method, path, need in ROUTE_SCOPES}
    checked = 0
    try:
        for route in app.routes:
            for handler in getattr(route, "route_handlers", []):
                for method in handler.http_methods - {"OPTIONS", "HEAD"}:
                    path = route.path_format
                    key = (method, "/schema/*" if path.startswith("/schema") else path)
                    assert key in table, f"{key} is missing from ROUTE_SCOPES"
                    guards = [g.requirement for layer in handler.ownership_layers
                              for g in (layer.guards or []) if isinstance(g, ScopeGuard)]
                    assert guards == ([] if table[key] == OPEN else [table[key]]), key
                    checked += 1
    finally:
        services.close()
    assert checked >= 25
    assert table[("GET", "/v2/models/{name}")] == MODEL_ACCESS


# ---------------------------------------------------------------- HTTPS and mutual TLS


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
                      x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _cert(subject: str, key: Any, issuer: tuple[x509.Name, Any] | None, *, ca: bool = False,
          server: bool = False) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer or (_name(subject), key)
    builder = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
               .public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - dt.timedelta(minutes=5))
               .not_valid_after(now + dt.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                              critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                   issuer_key.public_key()), critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
            key_encipherment=False, data_encipherment=False, key_agreement=False,
            encipher_only=False, decipher_only=False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


class PKI:
    """A CA, a server certificate for 127.0.0.1 and client certificates, as files."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca = _cert("test-ca", self.ca_key, None, ca=True)
        self.ca_file = self._write("ca.pem", self.ca)
        self.server_cert, self.server_key = self.issue("127.0.0.1", server=True)

    def _write(self, name: str, cert: x509.Certificate) -> Path:
        path = self.root / name
        path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        return path

    def issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = _cert(cn, key, (self.ca.subject, self.ca_key), server=server)
        key_file = write_private(self.root / f"{cn}.key", key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        return self._write(f"{cn}.pem", cert), key_file

    def client(self, cert: tuple[Path, Path] | None = None) -> httpx.Client:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        if cert is not None:
            context.load_cert_chain(*map(str, cert))
        return httpx.Client(verify=context, timeout=30)


class TLSServerThread(ServerThread):
    """ServerThread serving HTTPS with the settings ``appliance serve`` would use."""

    def __init__(self, app: Any, tls: dict[str, Any], loop: str) -> None:
        super().__init__(app)
        config = uvicorn.Config(app, loop=loop, access_log=False, log_level="warning",
                                lifespan="on", **tls)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                       daemon=True)
        self.url = f"https://127.0.0.1:{self.port}"


@pytest.fixture(params=["asyncio", "uvloop"])  # `appliance serve` runs uvloop
def mtls(request, tmp_path, idp_pem) -> Iterator[tuple[str, PKI]]:
    pki = PKI(tmp_path)
    auth = {"mode": "on", "tls_cert": str(pki.server_cert), "tls_key": str(pki.server_key),
            "tls_client_ca": str(pki.ca_file),
            "issuers": [{"issuer": IDP, "audience": AUD, "pem_files": [str(idp_pem)]}],
            "mtls_subjects": {"CN=scorer": ["models:infer:a"], "CN=auditor,O=Acme": ["audit:read",
                                                                                    "models:read"]}}
    services = make_services(tmp_path / "var", plugin_manager(), auth=auth)
    import_model(services.registry, services.catalog, scale_model(tmp_path / "a.onnx", 2),
                 name="a")
    server = TLSServerThread(create_app(services, load_in_background=False),
                             uvicorn_tls_kwargs(services.settings.auth), request.param)
    server.start()
    yield server.url, pki
    server.stop()


def test_client_certificate_subject_maps_to_scopes(mtls):
    url, pki = mtls
    with pki.client(pki.issue("scorer")) as client:
        assert client.post(f"{url}/v2/models/a/infer", json=BODY).status_code == 200
        r = client.get(f"{url}/v1/models")
        assert r.status_code == 403
        assert "CN=scorer,O=Acme lacks the models:read scope" in r.json()["error"]
    with pki.client(pki.issue("auditor")) as client:
        assert client.get(f"{url}/v1/models").status_code == 200


def test_unmapped_client_certificate_gets_401(mtls):
    url, pki = mtls
    with pki.client(pki.issue("stranger")) as client:
        r = client.post(f"{url}/v2/models/a/infer", json=BODY)
    assert r.status_code == 401 and "CN=stranger,O=Acme is not in auth.mtls_subjects" in r.text


def test_https_without_client_certificate_takes_bearer_tokens(mtls, idp_key):
    url, pki = mtls
    with pki.client() as client:
        assert client.post(f"{url}/v2/models/a/infer", json=BODY).status_code == 401
        r = client.post(f"{url}/v2/models/a/infer", json=BODY,
                        headers=bearer(make_token(idp_key, scope="models:infer")))
        assert r.status_code == 200


def test_certificate_from_another_ca_fails_the_handshake(mtls, tmp_path_factory):
    url, pki = mtls
    rogue = PKI(tmp_path_factory.mktemp("rogue"))
    context = ssl.create_default_context(cafile=str(pki.ca_file))
    context.load_cert_chain(*map(str, rogue.issue("scorer")))
    with httpx.Client(verify=context, timeout=30) as client, pytest.raises(
            (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError)):
        client.post(f"{url}/v2/models/a/infer", json=BODY)
