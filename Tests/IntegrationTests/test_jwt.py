"""JWT authentication (HS256 with a secret, RS256 / ES256 with a PEM public key), end to end."""

import base64
import hashlib
import hmac
import json
import subprocess
import time

import pytest

from conftest import JWT_SECRET, Stack, wait_until


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(claims, alg="HS256", secret=JWT_SECRET.encode(), sign=None, header=None):
    head = b64(json.dumps(header or {"alg": alg, "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    signing_input = f"{head}.{body}".encode()
    if sign is not None:
        sig = sign(signing_input)
    elif alg == "none":
        sig = b""
    else:
        sig = hmac.new(secret, signing_input, hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


def claims(**over):
    now = int(time.time())
    base = {"tenant_id": "acme", "sub": "user-7", "exp": now + 300, "iat": now, "iss": "https://idp.test",
            "aud": "tenantgate-test"}
    base.update(over)
    return {k: v for k, v in base.items() if v is not None}


def chat(stack, tok, path="/tenant/acme"):
    with stack.client() as c:
        return c.post(f"{path}/v1/chat/completions", headers={"Authorization": f"Bearer {tok}"},
                      json={"model": "mock-small", "messages": [{"role": "user", "content": "jwt hello"}]})


def test_hs256_token_authenticates_and_sets_the_end_user(stack):
    r = chat(stack, token(claims()))
    assert r.status_code == 200, r.text
    rid = r.headers["x-request-id"]
    assert wait_until(lambda: stack.sql("SELECT end_user, key_id FROM executions WHERE request_id = ?", rid)
                      == [("user-7", "jwt")])
    # The bare path works too: the tenant comes from the claim.
    assert chat(stack, token(claims()), path="").status_code == 200


@pytest.mark.parametrize("make", [
    lambda: token(claims(exp=int(time.time()) - 120)),
    lambda: token(claims(iss="https://other-idp.test")),
    lambda: token(claims(iss=None)),
    lambda: token(claims(aud="another-service")),
    lambda: token(claims(aud=["another-service", "third"])),
    lambda: token(claims(aud=None)),
    lambda: token(claims(), secret=b"wrong-secret-wrong-secret-wrong-secret"),
    lambda: token(claims(), alg="none"),
    lambda: token(claims(), header={"alg": "RS256", "typ": "JWT"}),
    lambda: token(claims(), header={"alg": "HS512", "typ": "JWT"}),
    lambda: token(claims(sub=None)),
    lambda: token(claims(exp=None)),
    lambda: token(claims(nbf=int(time.time()) + 3600)),
    lambda: token(claims(iat=int(time.time()) + 3600)),
    lambda: token(claims(tenant_id="Not A Tenant")),
    lambda: token(claims(tenant_id=None)),
    lambda: token(claims())[:-4] + "AAAA",
    lambda: "eyJhbGciOiJIUzI1NiJ9.e30.",
    lambda: "eyJ%%%.e30.abc",
])
def test_bad_tokens_are_401_invalid_token(stack, make):
    r = chat(stack, make())
    assert r.status_code == 401, r.text
    assert r.json()["error"]["code"] == "invalid_token"


def test_token_for_another_tenant_is_403(stack):
    r = chat(stack, token(claims(tenant_id="globex")), path="/tenant/acme")
    assert r.status_code == 403 and r.json()["error"]["code"] == "tenant_mismatch"


def openssl(*args, input=None):
    return subprocess.run(["openssl", *args], input=input, capture_output=True, check=True).stdout


def der_to_raw(der):
    """ECDSA DER (SEQUENCE of two INTEGERs) to JWS r||s, 32 bytes each."""
    assert der[0] == 0x30
    i = 2 if der[1] < 0x80 else 3
    out = b""
    for _ in range(2):
        assert der[i] == 0x02
        n = der[i + 1]
        out += der[i + 2:i + 2 + n].lstrip(b"\x00").rjust(32, b"\x00")
        i += 2 + n
    return out


@pytest.fixture(params=["RS256", "ES256"])
def asym_stack(request, tmp_path):
    alg = request.param
    key = tmp_path / "key.pem"
    if alg == "RS256":
        openssl("genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-out", str(key))
    else:
        openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(key))
    pub = tmp_path / "pub.pem"
    openssl("pkey", "-in", str(key), "-pubout", "-out", str(pub))
    s = Stack(workers=1, threads=4).start()
    cfg = s.home / "jwt.yaml"
    cfg.write_text(f"jwt: {{algorithm: {alg}, public_key_file: \"{pub}\", tenant_claim: tenant_id, "
                   "issuer: \"https://idp.test\", audience: tenantgate-test}\n")
    s.cli("config", "import", str(cfg))
    yield s, alg, key, pub
    s.stop()


def test_rs256_and_es256_tokens(asym_stack):
    s, alg, key, pub = asym_stack

    def sign(data):
        sig = openssl("dgst", "-sha256", "-sign", str(key), input=data)
        return der_to_raw(sig) if alg == "ES256" else sig

    good = token(claims(), alg=alg, sign=sign)
    assert wait_until(lambda: chat(s, good).status_code == 200, timeout=3)
    # Algorithm confusion: an HS256 token whose HMAC key is the public key's PEM.
    confused = token(claims(), alg="HS256", secret=pub.read_bytes())
    r = chat(s, confused)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token"
    tampered = token(claims(tenant_id="globex"), alg=alg, sign=lambda d: sign(d.replace(b"x", b"y")))
    assert chat(s, tampered, path="").status_code == 401


def test_a_jwt_config_without_issuer_and_audience_is_refused(stack, tmp_path):
    cfg = tmp_path / "unbound.yaml"
    cfg.write_text("jwt: {algorithm: HS256, secret_env: TG_TEST_JWT_SECRET, tenant_claim: tenant_id}\n")
    out = stack.cli("config", "import", str(cfg), check=False)
    assert out.returncode != 0 and "jwt.issuer" in out.stderr
    # Nothing changed: tokens bound to the configured issuer and audience still work.
    assert chat(stack, token(claims())).status_code == 200
