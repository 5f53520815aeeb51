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


def test_byok_forwards_the_clients_own_key(stack):
    r = post(stack, "byok", "byok-1", "sk-client-own-key-123456")
    assert r.status_code == 200, r.text
    assert upstream_auth(stack, "byok-1") == ["Bearer sk-client-own-key-123456"]
    assert r.headers["x-ratelimit-limit"] == "1000"   # limits still apply
    rid = r.headers["x-request-id"]
    assert wait_until(lambda: stack.sql("SELECT key_id FROM executions WHERE request_id = ?", rid) == [("byok",)])
    logs = stack.log_path.read_text() + (stack.home / "log" / "access.log").read_text()
    assert "sk-client-own-key-123456" not in logs
    # A tenant without passthrough still wants a gateway key.
    r = post(stack, "acme", "byok-2", "sk-client-own-key-123456")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"


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
