"""Managed upstream keys (sealed at rest, never shown) and BYOK passthrough."""

import json

from conftest import wait_until


def post(stack, tenant, content, key):
    with stack.client() as c:
        return c.post(f"/tenant/{tenant}/v1/chat/completions", headers={"Authorization": f"Bearer {key}"},
                      json={"model": "fast", "messages": [{"role": "user", "content": content}]})


def upstream_auth(stack, marker):
    return [q["headers"].get("authorization") for q in stack.upstream_requests() if marker in json.dumps(q["body"])]


def all_bytes(stack):
    raw = b""
    for path in stack.home.glob("tenantgate.db*"):
        raw += path.read_bytes()
    return raw


def test_managed_key_is_used_and_never_stored_or_shown_in_clear(stack):
    assert post(stack, "vault", "vault-1", stack.keys["vault"]).status_code == 200
    assert upstream_auth(stack, "vault-1") == ["Bearer sk-tenant-managed-key-999"]
    # Other tenants keep the backend's environment key.
    assert post(stack, "acme", "vault-other", stack.keys["acme"]).status_code == 200
    assert upstream_auth(stack, "vault-other") == ["Bearer sk-upstream-secret-123"]
    assert b"sk-tenant-managed-key-999" not in all_bytes(stack)
    exported = stack.cli("config", "export").stdout
    assert "sk-tenant-managed-key-999" not in exported and "encrypted:sk-…-999" in exported
    shown = stack.cli("tenant", "show", "vault", "--json").stdout
    assert "sk-tenant-managed-key-999" not in shown
    listed = stack.cli("upstream-keys", "list").stdout
    assert "vault\tup\tsk-…-999" in listed
    # Re-importing the export keeps the key.
    path = stack.home / "export.yaml"
    path.write_text(exported)
    stack.cli("config", "import", str(path))
    assert post(stack, "vault", "vault-2", stack.keys["vault"]).status_code == 200
    assert upstream_auth(stack, "vault-2") == ["Bearer sk-tenant-managed-key-999"]


def test_rotating_the_master_key_keeps_keys_working(stack):
    before = (stack.home / "master.key").read_text()
    out = stack.cli("upstream-keys", "rotate-master")
    assert "re-sealed 1" in out.stdout
    assert (stack.home / "master.key").read_text() != before
    assert oct((stack.home / "master.key").stat().st_mode & 0o777) == "0o600"

    def served():
        marker = f"vault-rot-{served.n}"
        served.n += 1
        return post(stack, "vault", marker, stack.keys["vault"]).status_code == 200 and \
            upstream_auth(stack, marker) == ["Bearer sk-tenant-managed-key-999"]
    served.n = 0
    assert wait_until(served, timeout=3)


def test_byok_forwards_the_clients_own_key_beside_a_gateway_key(stack):
    def byok(marker, headers, tenant="byok", model="fast"):
        with stack.client() as c:
            return c.post(f"/tenant/{tenant}/v1/chat/completions", headers=headers,
                          json={"model": model, "messages": [{"role": "user", "content": marker}]})
    gateway = {"Authorization": f"Bearer {stack.keys['byok']}"}
    r = byok("byok-1", {**gateway, "X-Provider-Key": "sk-client-own-key-123456"})
    assert r.status_code == 200, r.text
    assert upstream_auth(stack, "byok-1") == ["Bearer sk-client-own-key-123456"]
    assert r.headers["x-ratelimit-limit"] == "1000"   # limits still apply
    rid = r.headers["x-request-id"]
    assert wait_until(lambda: stack.sql("SELECT key_id FROM executions WHERE request_id = ?", rid)
                      != [])
    logs = stack.log_path.read_text() + (stack.home / "log" / "access.log").read_text()
    assert "sk-client-own-key-123456" not in logs
    # A provider key alone reaches nothing: not the model, not the tenant's info, not its budget.
    for headers in ({"Authorization": "Bearer sk-client-own-key-123456"}, {"x-api-key": "anything-at-all"}):
        r = byok("byok-2", headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key", r.text
        with stack.client() as c:
            assert c.get("/tenant/byok/v1/tenant-info", headers=headers).status_code == 401
            assert c.get("/tenant/byok/v1/models", headers=headers).status_code == 401
    # A gateway key without the provider key: a model call is refused before anything is reserved.
    r = byok("byok-3", gateway)
    assert r.status_code == 401 and r.json()["error"]["code"] == "missing_provider_key"
    assert upstream_auth(stack, "byok-2") == [] and upstream_auth(stack, "byok-3") == []
    # A header that is not a plausible key is a 400, never forwarded.
    r = byok("byok-4", {**gateway, "X-Provider-Key": b"sk-bad\xc3\xa9"})
    assert r.status_code == 400 and upstream_auth(stack, "byok-4") == []
    # Other tenants ignore the header: their own managed or environment key is used.
    r = byok("byok-5", {"Authorization": f"Bearer {stack.keys['acme']}", "X-Provider-Key": "sk-client-own"},
             tenant="acme")
    assert r.status_code == 200 and upstream_auth(stack, "byok-5") == ["Bearer sk-upstream-secret-123"]


def test_a_failed_rotation_keeps_the_old_master_key(fresh_stack):
    import sqlite3
    s = fresh_stack
    before = (s.home / "master.key").read_text()
    conn = sqlite3.connect(s.home / "tenantgate.db", timeout=10)
    conn.execute("INSERT INTO upstream_keys(tenant_id, backend, sealed, hint) VALUES ('acme', 'up', x'00ff', 'x')")
    conn.commit()
    conn.close()
    out = s.cli("upstream-keys", "rotate-master", check=False)
    assert out.returncode != 0
    assert (s.home / "master.key").read_text() == before
    assert not (s.home / "master.key.previous").exists() and not (s.home / "master.key.new").exists()
    assert post(s, "vault", "vault-kept", s.keys["vault"]).status_code == 200
    assert upstream_auth(s, "vault-kept") == ["Bearer sk-tenant-managed-key-999"]


def bump_config_version(stack):
    import sqlite3
    conn = sqlite3.connect(stack.home / "tenantgate.db", timeout=10)
    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'config_version'")
    conn.commit()
    conn.close()


def test_an_unusable_master_key_fails_closed(fresh_stack):
    """A lost, wrong or corrupt master.key refuses the tenants whose stored keys it sealed: their traffic
    never moves onto the operator's environment key, /readyz says so, and other tenants are served."""
    s = fresh_stack
    assert post(s, "vault", "mk-0", s.keys["vault"]).status_code == 200
    assert upstream_auth(s, "mk-0") == ["Bearer sk-tenant-managed-key-999"]
    good = (s.home / "master.key").read_text()
    for n, broken in enumerate(["0" * 64 + "\n", "not hex at all\n", None]):
        if broken is None:
            (s.home / "master.key").unlink()
        else:
            (s.home / "master.key").write_text(broken)
        bump_config_version(s)  # the workers reload (and re-read the master key)

        def refused():
            refused.i += 1
            r = post(s, "vault", f"mk-{n}-probe-{refused.i}-end", s.keys["vault"])
            return r.status_code == 503 and r.json()["error"]["code"] == "upstream_key_unavailable"
        refused.i = 0
        assert wait_until(refused, timeout=3)  # once the workers have reloaded
        assert upstream_auth(s, f"mk-{n}-probe-{refused.i}-end") == []
        with s.client() as c:
            ready = c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["upstream_keys_unavailable"] == 1
        assert post(s, "acme", f"mk-{n}-other", s.keys["acme"]).status_code == 200
        # Back to the right key before the next broken one, so each broken state is surely loaded.
        (s.home / "master.key").write_text(good)
        bump_config_version(s)
        assert wait_until(lambda: post(s, "vault", "mk-back", s.keys["vault"]).status_code == 200, timeout=3)
    events = {e.get("msg") for e in s.app_log()}
    assert "master_key_unusable" in events and "upstream_keys_unavailable" in events
    (s.home / "master.key").write_text(good)
    bump_config_version(s)
    assert wait_until(lambda: post(s, "vault", "mk-back", s.keys["vault"]).status_code == 200, timeout=3)
    with s.client() as c:
        assert c.get("/readyz").status_code == 200


def test_a_sealed_key_moved_to_another_tenant_does_not_open(fresh_stack):
    import sqlite3
    s = fresh_stack
    conn = sqlite3.connect(s.home / "tenantgate.db", timeout=10)
    sealed = conn.execute("SELECT sealed FROM upstream_keys WHERE tenant_id = 'vault'").fetchone()[0]
    assert sealed[0] == 2  # format 2: bound to (tenant, backend)
    conn.execute("INSERT INTO upstream_keys(tenant_id, backend, sealed, hint) VALUES ('acme', 'up', ?, 'x')", (sealed,))
    conn.commit()
    conn.close()

    def refused():
        r = post(s, "acme", f"moved-{refused.n}", s.keys["acme"])
        refused.n += 1
        return r.status_code == 503 and r.json()["error"]["code"] == "upstream_key_unavailable"
    refused.n = 0
    assert wait_until(refused, timeout=3)
    assert "Bearer sk-tenant-managed-key-999" not in [q["headers"].get("authorization")
                                                      for q in s.upstream_requests()
                                                      if "moved-" in json.dumps(q["body"])]


def legacy_seal(plaintext: bytes, key: bytes) -> bytes:
    """AES-256-GCM as upstream keys were sealed before format 2: nonce ‖ ciphertext ‖ tag, no associated
    data (libcrypto through ctypes: the test venv has no crypto package)."""
    import ctypes
    import os
    lib = ctypes.CDLL("libcrypto.so.3")
    lib.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
    lib.EVP_aes_256_gcm.restype = ctypes.c_void_p
    for name in ("EVP_EncryptInit_ex", "EVP_CIPHER_CTX_ctrl", "EVP_EncryptUpdate", "EVP_EncryptFinal_ex",
                 "EVP_CIPHER_CTX_free"):
        getattr(lib, name).argtypes = None
    nonce = os.urandom(12)
    ctx = ctypes.c_void_p(lib.EVP_CIPHER_CTX_new())
    out = ctypes.create_string_buffer(len(plaintext) + 16)
    tag = ctypes.create_string_buffer(16)
    n = ctypes.c_int(0)
    assert lib.EVP_EncryptInit_ex(ctx, ctypes.c_void_p(lib.EVP_aes_256_gcm()), None, None, None) == 1
    assert lib.EVP_CIPHER_CTX_ctrl(ctx, 0x9, 12, None) == 1  # EVP_CTRL_GCM_SET_IVLEN
    assert lib.EVP_EncryptInit_ex(ctx, None, None, key, nonce) == 1
    assert lib.EVP_EncryptUpdate(ctx, out, ctypes.byref(n), plaintext, len(plaintext)) == 1
    body = out.raw[:n.value]
    assert lib.EVP_EncryptFinal_ex(ctx, out, ctypes.byref(n)) == 1
    assert lib.EVP_CIPHER_CTX_ctrl(ctx, 0x10, 16, tag) == 1  # EVP_CTRL_GCM_GET_TAG
    lib.EVP_CIPHER_CTX_free(ctx)
    return nonce + body + tag.raw


def test_a_legacy_unbound_seal_is_refused_by_workers_and_resealed_by_the_cli(fresh_stack):
    """A row sealed before format 2 (not bound to its tenant and backend) is never opened by a worker (it
    could have been copied from another tenant); any CLI command with the master key re-seals it in place."""
    import sqlite3
    s = fresh_stack
    key = bytes.fromhex((s.home / "master.key").read_text().strip())
    conn = sqlite3.connect(s.home / "tenantgate.db", timeout=10)
    conn.execute("UPDATE upstream_keys SET sealed = ? WHERE tenant_id = 'vault' AND backend = 'up'",
                  (legacy_seal(b"sk-legacy-sealed-key-777", key),))
    conn.commit()
    conn.close()

    def refused():
        refused.n += 1
        r = post(s, "vault", f"legacy-{refused.n}-end", s.keys["vault"])
        return r.status_code == 503 and r.json()["error"]["code"] == "upstream_key_unavailable"
    refused.n = 0
    assert wait_until(refused, timeout=3)
    # Until the workers reloaded, the key they had loaded served; the legacy row was never opened.
    assert "Bearer sk-legacy-sealed-key-777" not in upstream_auth(s, "legacy-")
    # A CLI command re-seals it for (vault, up); the workers then use it.
    s.cli("migrate")
    conn = sqlite3.connect(s.home / "tenantgate.db", timeout=10)
    sealed = conn.execute("SELECT sealed FROM upstream_keys WHERE tenant_id = 'vault'").fetchone()[0]
    conn.close()
    assert sealed[0] == 2 and len(sealed) == 1 + 12 + len(b"sk-legacy-sealed-key-777") + 16
    assert wait_until(lambda: post(s, "vault", "legacy-resealed", s.keys["vault"]).status_code == 200, timeout=3)
    assert upstream_auth(s, "legacy-resealed") == ["Bearer sk-legacy-sealed-key-777"]


def test_a_backend_whose_key_variable_is_unset_fails_loudly(fresh_stack, tmp_path):
    """api_key_env names a variable the gateway's environment lacks: `config import` warns, calls are refused
    with 503 upstream_key_missing naming it (before: sent keyless, 502 "upstream answered HTTP 401"),
    /readyz names the backend, and a tenant with its own stored key, or a keyless backend, is served."""
    s = fresh_stack
    config = tmp_path / "extra.yaml"
    config.write_text(f"""
backends:
  realish: {{provider: openai, base_url: "http://127.0.0.1:{s.upstream.port}/v1", api_key_env: TG_TEST_UNSET_KEY}}
models:
  real-model: {{backend: realish, upstream_model: real-up}}
tenants:
  newcomer:
    models: [real-model]
  ownkey:
    models: [real-model]
    upstream_keys: {{realish: "sk-own-key-4242"}}
""")
    imported = s.cli("config", "import", str(config))
    assert "warning: backend 'realish': TG_TEST_UNSET_KEY is not set" in imported.stderr, imported.stderr
    assert "newcomer" in imported.stderr and "ownkey" not in imported.stderr
    for tenant in ("newcomer", "ownkey"):
        s.keys[tenant] = s.cli("key", "create", tenant).stdout.strip().splitlines()[-1]

    def call(tenant, marker):
        with s.client() as c:
            return c.post(f"/tenant/{tenant}/v1/chat/completions", headers={"Authorization": f"Bearer {s.keys[tenant]}"},
                          json={"model": "real-model", "messages": [{"role": "user", "content": marker}]})

    def refused():
        r = call("newcomer", "keyless-call")
        return r if r.status_code == 503 else None
    assert wait_until(refused, timeout=5)
    r = call("newcomer", "keyless-call")
    assert r.status_code == 503 and r.json()["error"]["code"] == "upstream_key_missing"
    assert "TG_TEST_UNSET_KEY is not set" in r.json()["error"]["message"]
    assert upstream_auth(s, "keyless-call") == []  # never sent
    ok = call("ownkey", "own-key-call")
    assert ok.status_code == 200 and upstream_auth(s, "own-key-call") == ["Bearer sk-own-key-4242"]
    with s.client() as c:
        ready = c.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "degraded"
    assert ready.json()["backends_degraded"] == [
        {"backend": "realish", "error": "TG_TEST_UNSET_KEY is not set", "tenants": 1}]
    assert any(e.get("msg") == "backend_key_missing" and e.get("variable") == "TG_TEST_UNSET_KEY"
               for e in s.app_log())
