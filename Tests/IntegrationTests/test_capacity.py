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


def hammer(stack, tenant, total, marker, clients=64, model="patient-model"):
    """`total` requests of `tenant` from `clients` concurrent clients; returns the statuses."""
    statuses = []
    lock = threading.Lock()
    counter = iter(range(total))

    def client():
        with httpx.Client(base_url=stack.base, verify=False, timeout=60) as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                # A backend with a long timeout: this is about the books, not about a busy mock's delays.
                r = c.post(f"/tenant/{tenant}/v1/chat/completions", headers=auth(stack, tenant), json={
                    "model": model, "max_tokens": 3,
                    "messages": [{"role": "user", "content": f"{marker} {i}"}]})
                with lock:
                    statuses.append(r.status_code)
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return statuses


def test_leases_keep_limits_and_budgets_exact_across_8_workers(big_stack):
    """Leases while there is room, exact reservations near the limit: never more than the limit."""
    s = big_stack

    def upstream_calls(marker):
        """Distinct requests the upstream saw (a dropped kept-alive connection is retried: counted once)."""
        return len({q["body"]["messages"][-1]["content"] for q in s.upstream_requests()
                    if marker in str(q["body"])})

    def drained(tenant):
        return s.sql("SELECT COALESCE(SUM(reserved_tokens), 0) FROM budget_counters WHERE scope = ?",
                     f"tenant:{tenant}")[0][0] == 0 and not s.sql("SELECT 1 FROM reservations WHERE tenant = ?", tenant)

    # A per-minute limit: 1,200 requests within a few seconds, 600 may pass.
    statuses = hammer(s, "lease-rpm", 1200, "lease-rpm-marker")
    ok = statuses.count(200)
    assert ok <= 600 and set(statuses) <= {200, 429}, sorted(set(statuses))
    assert ok >= 300  # leases hand unused capacity back; most of the limit is used
    assert wait_until(lambda: drained("lease-rpm"), timeout=10)
    assert wait_until(lambda: s.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'lease-rpm'")[0][0] == 1200)
    admitted = s.sql("SELECT SUM(amount) FROM rate_log WHERE tenant = 'lease-rpm' AND kind = 'r'")[0][0]
    assert admitted == ok == upstream_calls("lease-rpm-marker")
    # Both ways of admission ran: leases (one window entry for many requests) and exact ones near the limit.
    entries = s.sql("SELECT amount FROM rate_log WHERE tenant = 'lease-rpm' AND kind = 'r'")
    assert any(a > 1 for (a,) in entries) and len(entries) < ok

    # A hard token budget: settled usage never exceeds it; counters = execution rows = upstream calls.
    statuses = hammer(s, "lease-budget", 1200, "lease-budget-marker")
    assert set(statuses) <= {200, 429}, sorted(set(statuses))
    assert wait_until(lambda: drained("lease-budget"), timeout=10)
    assert wait_until(lambda: s.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'lease-budget'")[0][0] == 1200)
    used = s.sql("SELECT COALESCE(SUM(tokens_in + tokens_out), 0), COUNT(*) FROM executions "
                 "WHERE tenant = 'lease-budget' AND status = 200")[0]
    counter = s.sql("SELECT used_tokens FROM budget_counters WHERE scope = 'tenant:lease-budget'")[0][0]
    assert used[0] <= 6000 and counter == used[0]
    assert used[1] == statuses.count(200) == upstream_calls("lease-budget-marker")
    assert statuses.count(429) > 0


def test_a_drained_worker_gives_its_leases_back(fresh_stack):
    s = fresh_stack
    with s.client() as c:
        for i in range(20):
            r = c.post("/tenant/priced/v1/chat/completions", headers=auth(s, "priced"),
                       json={"model": "fast", "max_tokens": 3, "messages": [{"role": "user", "content": f"drain {i}"}]})
            assert r.status_code == 200
    # While the pool runs, a lease holds more than the requests used (it admits for about a second).
    held = s.sql("SELECT COALESCE(SUM(reserved_tokens), 0) FROM budget_counters WHERE scope = 'tenant:priced'")[0][0]
    s.pool.send_signal(signal.SIGTERM)
    assert s.pool.wait(15) == 0
    assert s.sql("SELECT COUNT(*) FROM reservations")[0][0] == 0
    assert s.sql("SELECT COALESCE(SUM(reserved_tokens), 0), COALESCE(SUM(reserved_nano), 0) FROM budget_counters")[0] \
        == (0, 0)
    used = s.sql("SELECT SUM(tokens_in + tokens_out) FROM executions WHERE tenant = 'priced'")[0][0]
    assert s.sql("SELECT used_tokens FROM budget_counters WHERE scope = 'tenant:priced'")[0][0] == used
    assert s.sql("SELECT SUM(amount) FROM rate_log WHERE tenant = 'priced' AND kind = 'r'")[0][0] == 20
    assert held > 0
