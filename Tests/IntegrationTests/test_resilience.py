"""Retries, fallbacks and per-tenant circuit breakers shared by all workers."""

import json
import time

from conftest import wait_until


def auth(stack, tenant):
    return {"Authorization": f"Bearer {stack.keys[tenant]}"}


def post(stack, tenant, content, model="fast"):
    with stack.client() as c:
        return c.post(f"/tenant/{tenant}/v1/chat/completions", headers=auth(stack, tenant),
                      json={"model": model, "messages": [{"role": "user", "content": content}]})


def seen(stack, marker):
    return [q for q in stack.upstream_requests() if marker in json.dumps(q["body"])]


def test_retry_then_success(stack):
    r = post(stack, "acme", 'retry-a #mock {"fail_times": 2, "status": 503}')
    assert r.status_code == 200, r.text
    assert len(seen(stack, "retry-a")) == 3
    rid = r.headers["x-request-id"]
    assert wait_until(lambda: stack.sql("SELECT retries, status FROM executions WHERE request_id = ?", rid) == [(2, 200)])


def test_retry_after_is_honoured(stack):
    start = time.monotonic()
    r = post(stack, "acme", 'retry-b #mock {"fail_times": 1, "status": 429, "retry_after": 1}')
    assert r.status_code == 200
    assert time.monotonic() - start >= 1.0
    assert len(seen(stack, "retry-b")) == 2


def test_client_errors_are_not_retried(stack):
    r = post(stack, "acme", 'retry-c #mock {"status": 400}')
    assert r.status_code == 400
    assert len(seen(stack, "retry-c")) == 1


def test_fallback_serves_and_says_so(stack):
    r = post(stack, "resilient", 'fb-a #mock {"status": 500, "only_model": "upstream-fast-v2"}')
    assert r.status_code == 200, r.text
    assert r.headers["x-tenantgate-model"] == "backup"
    models = [q["body"]["model"] for q in seen(stack, "fb-a")]
    assert models == ["upstream-fast-v2"] * 3 + ["upstream-backup"]
    rid = r.headers["x-request-id"]
    assert wait_until(lambda: stack.sql("SELECT model, fallback_used FROM executions WHERE request_id = ?", rid)
                      == [("backup", 1)])


def test_circuit_opens_per_tenant_and_recovers_through_half_open(stack):
    for i in range(3):
        assert post(stack, "steady", f'cb-{i} #mock {{"status": 502}}').status_code == 502
    before = len(stack.upstream_requests())
    r = post(stack, "steady", "cb-while-open")
    assert r.status_code == 503 and r.json()["error"]["code"] == "circuit_open"
    assert 1 <= int(r.headers["retry-after"]) <= 2
    assert len(stack.upstream_requests()) == before
    # Another tenant on the same backend is served.
    assert post(stack, "acme", "cb-other-tenant").status_code == 200
    import httpx
    text = httpx.get(stack.base + "/metrics", verify=False).text
    assert 'tenantgate_circuit_open{tenant="steady",backend="up"} 1' in text
    # After the cooldown one probe goes through; its success closes the circuit.
    assert wait_until(lambda: post(stack, "steady", "cb-probe").status_code == 200, timeout=6, interval=0.3)
    assert post(stack, "steady", "cb-after").status_code == 200
    assert any(l.get("msg") == "circuit_open" and l.get("tenant") == "steady" for l in stack.app_log())
    assert wait_until(lambda: any(l.get("msg") == "circuit_close" and l.get("tenant") == "steady"
                                  for l in stack.app_log()))
