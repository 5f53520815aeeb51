"""Fair share of the pool between tenants: per-tenant caps on model calls in flight, exact across workers."""

import re
import signal
import threading

import httpx

from conftest import wait_until


def auth(stack, tenant):
    return {"Authorization": f"Bearer {stack.keys[tenant]}"}


def in_flight(stack, tenant):
    with stack.client() as c:
        text = c.get("/metrics").text
    m = re.search(rf'^tenantgate_in_flight_requests{{tenant="{tenant}"}} (\d+)$', text, re.M)
    return int(m.group(1)) if m else None


def hold(stack, tenant, n, marker, delay_ms=4000):
    """Starts n slow calls of `tenant` in threads; returns (threads, results)."""
    results = []

    def call(i):
        with httpx.Client(base_url=stack.base, verify=False, timeout=60) as c:
            r = c.post(f"/tenant/{tenant}/v1/chat/completions", headers=auth(stack, tenant), json={
                "model": "patient-model",
                "messages": [{"role": "user", "content": f'{marker}-{i} #mock {{"delay_ms": {delay_ms}}}'}]})
            results.append(r.status_code)
    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def test_a_tenant_at_its_cap_is_refused_and_nobody_else_waits(stack):
    threads, results = hold(stack, "greedy", 3, "greedy-hold")
    try:
        assert wait_until(lambda: in_flight(stack, "greedy") == 3, timeout=5)
        with stack.client() as c:
            r = c.post("/tenant/greedy/v1/chat/completions", headers=auth(stack, "greedy"),
                       json={"model": "fast", "messages": [{"role": "user", "content": "greedy-4th"}]})
            assert r.status_code == 429, r.text
            assert r.json()["error"]["code"] == "concurrency_limit_exceeded"
            assert r.json()["error"]["type"] == "concurrency"
            assert r.headers["retry-after"] == "1"
            # Other tenants, and the greedy tenant's own non-model endpoints, are served meanwhile.
            assert c.post("/tenant/acme/v1/chat/completions", headers=auth(stack, "acme"),
                          json={"model": "fast", "messages": [{"role": "user", "content": "acme-meanwhile"}]}
                          ).status_code == 200
            assert c.get("/tenant/greedy/v1/models", headers=auth(stack, "greedy")).status_code == 200
            assert c.get("/tenant/greedy/v1/tenant-info", headers=auth(stack, "greedy")).status_code == 200
        # All of that happened while the three slow calls were still in flight.
        assert all(t.is_alive() for t in threads) and results == []
    finally:
        for t in threads:
            t.join()
    assert results == [200, 200, 200]
    # The capacity comes back as calls end; the refusal is counted.
    assert wait_until(lambda: in_flight(stack, "greedy") == 0, timeout=5)
    with stack.client() as c:
        assert c.post("/tenant/greedy/v1/chat/completions", headers=auth(stack, "greedy"),
                      json={"model": "fast", "messages": [{"role": "user", "content": "greedy-after"}]}
                      ).status_code == 200
        metrics = c.get("/metrics").text
    assert re.search(r'tenantgate_rate_limited_total\{tenant="greedy",limit="concurrency"\} [1-9]', metrics), \
        [line for line in metrics.splitlines() if "rate_limited" in line]


def test_a_killed_workers_slots_come_back(fresh_stack):
    s = fresh_stack
    threads, results = hold(s, "greedy", 3, "killed-hold", delay_ms=20000)
    assert wait_until(lambda: in_flight(s, "greedy") == 3, timeout=5)
    before = s.worker_pids()
    for pid in before:
        __import__("os").kill(pid, signal.SIGKILL)
    for t in threads:
        t.join()
    assert all(code in (502, 503) for code in results), results  # nginx saw the workers die
    assert wait_until(lambda: len(s.worker_pids()) == 2 and not set(s.worker_pids()) & set(before), timeout=10)
    assert wait_until(lambda: in_flight(s, "greedy") == 0, timeout=5)
    with s.client() as c:
        r = c.post("/tenant/greedy/v1/chat/completions", headers=auth(s, "greedy"),
                   json={"model": "fast", "messages": [{"role": "user", "content": "after-kill"}]})
    assert r.status_code == 200, r.text
