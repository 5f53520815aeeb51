"""Rate limits, budgets, reservations and the execution log, across workers."""

import json
import re
import threading
import time

import httpx
import pytest

from conftest import wait_until


def auth(stack, tenant):
    return {"Authorization": f"Bearer {stack.keys[tenant]}"}


def post(c, stack, tenant, content="hello", model="fast", **extra):
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return c.post(f"/tenant/{tenant}/v1/chat/completions", json=body, headers=auth(stack, tenant))


def upstream_count(stack, marker):
    return sum(marker in json.dumps(q["body"]) for q in stack.upstream_requests())


def parallel(n, fn):
    results = [None] * n

    def run(i):
        results[i] = fn(i)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def reserved(stack, tenant):
    rows = stack.sql("SELECT COALESCE(SUM(reserved_tokens), 0), COALESCE(SUM(reserved_nano), 0) FROM budget_counters "
                     "WHERE scope = ?", f"tenant:{tenant}")
    return rows[0]


def settled(stack, tenant, executions):
    """Settlements are group-committed a few ms after the response: wait for them."""
    assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = ?", tenant)[0][0]
                      >= executions and reserved(stack, tenant) == (0, 0), timeout=10), "not settled"


def test_request_limit_admits_exactly_its_number_across_workers(stack):
    marker = "rpm-marker-1"

    def one(i):
        with stack.client() as c:
            return post(c, stack, "limited", f"{marker} {i}")

    responses = parallel(30, one)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) == 10 and len(refused) == 20
    for r in refused:
        assert r.json()["error"]["code"] == "rate_limit_exceeded"
        assert r.json()["error"]["type"] == "requests"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        assert r.headers["x-ratelimit-limit"] == "10"
    remaining = sorted(int(r.headers["x-ratelimit-remaining"]) for r in ok)
    assert remaining == list(range(10))
    assert int(ok[0].headers["x-ratelimit-reset"]) > time.time()
    assert upstream_count(stack, marker) == 10
    settled(stack, "limited", 30)
    # Refusals are logged as executions but consumed nothing.
    rows = stack.sql("SELECT status, COUNT(*), SUM(tokens_in + tokens_out) FROM executions WHERE tenant = 'limited' "
                     "GROUP BY status ORDER BY status")
    served = sum(r.json()["usage"]["total_tokens"] for r in ok)
    assert served > 0
    assert rows == [(200, 10, served), (429, 20, 0)]


def test_hard_token_budget_holds_under_64_way_concurrency(stack):
    marker = "budget-marker"

    def one(i):
        with stack.client() as c:
            return post(c, stack, "budgeted", f"{marker} {i}", max_tokens=4)

    responses = parallel(64, one)
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert ok and refused and len(ok) + len(refused) == 64
    for r in refused:
        assert r.json()["error"]["code"] == "budget_exceeded"
        assert r.json()["error"]["type"] == "tenant_budget_exceeded"
    settled(stack, "budgeted", 64)
    for pct in (50, 80):
        assert wait_until(lambda: any(l.get("msg") == "budget_threshold" and l.get("tenant") == "budgeted"
                                      and l.get("budget") == "daily_tokens" and l.get("percent") == pct
                                      for l in stack.app_log()))
    used = stack.sql("SELECT SUM(tokens_in + tokens_out) FROM executions WHERE tenant = 'budgeted'")[0][0]
    assert used <= 300
    counter = stack.sql("SELECT used_tokens FROM budget_counters WHERE scope = 'tenant:budgeted' AND period LIKE 'd:%'")
    assert counter == [(used,)]
    assert upstream_count(stack, marker) == len(ok)
    assert reserved(stack, "budgeted") == (0, 0)
    info = httpx.get(stack.base + "/tenant/budgeted/v1/tenant-info", headers=auth(stack, "budgeted"), verify=False).json()
    daily = info["limits"]["daily_tokens"]
    assert daily["limit"] == 300 and daily["used"] == used and daily["remaining"] == 300 - used
    assert daily["resets_at"].endswith("T00:00:00.000Z")


def test_soft_budget_serves_with_a_warning(stack):
    with stack.client() as c:
        r = post(c, stack, "softy", "soft one")
        assert r.status_code == 200
        assert r.headers["x-tenantgate-budget-warning"] == "daily_tokens"


def test_same_prompt_costs_the_same_streamed_and_not(stack):
    with stack.client() as c:
        a = post(c, stack, "priced", "price me exactly")
        with c.stream("POST", "/tenant/priced/v1/chat/completions", headers=auth(stack, "priced"),
                      json={"model": "fast", "stream": True, "messages": [{"role": "user",
                                                                           "content": "price me exactly"}]}) as s:
            list(s.iter_lines())
    assert a.status_code == 200
    settled(stack, "priced", 2)
    rows = stack.sql("SELECT streamed, tokens_in, tokens_out, cost_nano FROM executions WHERE tenant = 'priced' "
                     "ORDER BY id DESC LIMIT 2")
    assert sorted(r[0] for r in rows) == [0, 1]
    assert rows[0][1:] == rows[1][1:]
    assert rows[0][3] == (rows[0][1] * 1 + rows[0][2] * 2) * 1000   # nano-USD at $1 / $2 per Mtok
    assert a.headers["x-ratelimit-limit-tokens"] == "1000000000"


def test_upstream_failure_releases_its_reservation(stack):
    settled(stack, "priced", 0)
    before = stack.sql("SELECT used_tokens, used_nano FROM budget_counters WHERE scope = 'tenant:priced' "
                       "AND period LIKE 'd:%'")
    window = stack.sql("SELECT COUNT(*) FROM rate_log WHERE tenant = 'priced'")[0][0]
    with stack.client() as c:
        r = post(c, stack, "priced", '#mock {"status": 500}')
    assert r.status_code == 502
    assert wait_until(lambda: stack.sql("SELECT status FROM executions WHERE tenant = 'priced' ORDER BY id DESC "
                                        "LIMIT 1") == [(502,)])
    # A lease the request was admitted from returns its hold once it stops admitting (about a second).
    assert wait_until(lambda: reserved(stack, "priced") == (0, 0), timeout=5)
    assert stack.sql("SELECT used_tokens, used_nano FROM budget_counters WHERE scope = 'tenant:priced' "
                     "AND period LIKE 'd:%'") == before
    assert wait_until(lambda: stack.sql("SELECT COUNT(*) FROM rate_log WHERE tenant = 'priced'")[0][0] == window)
    row = stack.sql("SELECT status, error_code, tokens_in FROM executions WHERE tenant = 'priced' "
                    "ORDER BY id DESC LIMIT 1")
    assert row == [(502, "upstream_error", 0)]


def test_client_disconnect_releases_its_reservation(stack):
    body = {"model": "fast", "stream": True,
            "messages": [{"role": "user", "content": '#mock {"chunks": 8, "chunk_delay_ms": 150}'}]}
    with stack.client() as c:
        with c.stream("POST", "/tenant/priced/v1/chat/completions", json=body, headers=auth(stack, "priced")) as r:
            for line in r.iter_lines():
                if "part0" in line:
                    break
    assert wait_until(lambda: reserved(stack, "priced") == (0, 0), timeout=5)
    assert wait_until(lambda: stack.sql("SELECT status FROM executions WHERE tenant = 'priced' ORDER BY id DESC "
                                        "LIMIT 1") == [(499,)], timeout=5)


def test_usage_cli_reports_rollups(stack):
    def usage():
        return {row["tenant"]: row for row in json.loads(stack.cli("usage", "--by", "tenant", "--json").stdout)}

    settled(stack, "priced", 0)
    before = usage().get("priced", {"requests": 0, "tokens_in": 0, "tokens_out": 0})
    done = stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'priced'")[0][0]
    with stack.client() as c:
        answers = [post(c, stack, "priced", f"usage-cli {i}") for i in range(3)]
    assert [r.status_code for r in answers] == [200] * 3
    settled(stack, "priced", done + 3)
    out = usage()
    after = out["priced"]
    assert after["requests"] - before["requests"] == 3
    tokens = sum(r.json()["usage"]["prompt_tokens"] for r in answers)
    assert after["tokens_in"] - before["tokens_in"] == tokens
    out = list(out.values())
    top = json.loads(stack.cli("usage", "--by", "tenant", "--top", "1", "--json").stdout)
    assert len(top) == 1 and float(top[0]["cost_usd"]) == max(float(r["cost_usd"]) for r in out)
    bad = stack.cli("usage", "--since", "yesterday", check=False)
    assert bad.returncode != 0 and "--since" in bad.stderr


def test_global_budget_refusal_names_global(fresh_stack):
    s = fresh_stack
    cfg = s.home / "global.yaml"
    cfg.write_text("global_budget: {daily_usd: 0.0000001, enforcement: hard}\n")
    s.cli("config", "import", str(cfg))
    with s.client() as c:
        def refused():
            r = post(c, s, "acme", "global please")
            return r.status_code == 429 and r.json()["error"]["type"] == "global_budget_exceeded"
        assert wait_until(refused, timeout=3)


def test_accounting_is_exact_across_8_workers(big_stack):
    s = big_stack
    marker = "exact-marker"
    total = 2000
    statuses = []
    lock = threading.Lock()
    counter = iter(range(total))

    def worker(_):
        with s.client() as c:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                try:
                    # A backend with a long timeout: on 2 busy cores the mock upstream sometimes takes
                    # seconds, and this test is about the books, not about timeouts.
                    status = post(c, s, "priced", f"{marker} {i}", model="patient-model", max_tokens=3).status_code
                except httpx.HTTPError as e:
                    status = repr(e)
                with lock:
                    statuses.append(status)

    parallel(64, worker)
    assert statuses.count(200) == total, sorted(set(map(str, statuses)))
    settled(s, "priced", total)
    executions = s.sql("SELECT COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nano) FROM executions "
                       "WHERE tenant = 'priced' AND status = 200")[0]
    rollup = s.sql("SELECT SUM(requests), SUM(tokens_in + tokens_out), SUM(cost_nano) FROM usage_daily "
                   "WHERE tenant = 'priced'")[0]
    counters = s.sql("SELECT used_tokens, used_nano FROM budget_counters WHERE scope = 'tenant:priced' "
                     "AND period LIKE 'd:%'")[0]
    # Every request reached the upstream once, plus the retries the gateway recorded (a kept-alive
    # connection the mock upstream dropped under load is retried before any byte reached the client).
    seen = [json.loads(json.dumps(q["body"]))["messages"][-1]["content"] for q in s.upstream_requests()
            if marker in json.dumps(q["body"])]
    retries = s.sql("SELECT COALESCE(SUM(retries), 0) FROM executions WHERE tenant = 'priced'")[0][0]
    assert executions[0] == total == len(set(seen))
    # (A retry whose first attempt died before the mock recorded it shows once: at most, not exactly.)
    assert total <= len(seen) <= total + retries
    assert rollup == executions
    assert counters == (executions[1], executions[2])
    assert reserved(s, "priced") == (0, 0)
    # The window holds exactly the admissions: per request, or per lease once the lease is retired.
    assert s.sql("SELECT SUM(amount) FROM rate_log WHERE tenant = 'priced' AND kind = 'r'")[0][0] == total


def test_sigterm_flushes_queued_settlements(fresh_stack):
    s = fresh_stack

    def one(i):
        with s.client() as c:
            return post(c, s, "globex", f"flush {i}", model="mock-small").status_code

    assert parallel(40, one) == [200] * 40
    s.pool.send_signal(__import__("signal").SIGTERM)
    assert s.pool.wait(15) == 0
    assert s.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'globex'")[0][0] == 40


def thresholds(stack, tenant):
    return sorted((l["budget"], l["percent"]) for l in stack.app_log()
                  if l.get("msg") == "budget_threshold" and l.get("tenant") == tenant)


def test_a_tiny_budget_fits_the_first_request_instead_of_refusing_it(stack):
    """daily_usd 0.05 on a $15/Mtok model: the default worst case (4,096 output tokens, $0.0614) is more than
    the whole budget. Before: refused at once with $0 spent. Now the cap is lowered to what fits."""
    with stack.client() as c:
        marker = "tiny-fit-1"
        usage = {"prompt_tokens": 20, "completion_tokens": 2000, "total_tokens": 2020}
        r = post(c, stack, "tinybudget", "#mock " + json.dumps({"text": f"{marker} ", "usage": usage}),
                 model="pricey")
        assert r.status_code == 200, r.text
        cap = int(r.headers["x-tenantgate-max-tokens"])
        # $0.05 - the prompt's bound at $3/Mtok, over $15/Mtok: about 3,330 output tokens.
        assert 3000 < cap < 3334
        sent = [q["body"] for q in stack.upstream_requests() if marker in json.dumps(q["body"])]
        assert [b["max_tokens"] for b in sent] == [cap]
        settled(stack, "tinybudget", 1)
        # Holding the whole budget announced nothing; the settled $0.03006 (60 %) announces 50 % once.
        spent = stack.sql("SELECT used_nano FROM budget_counters WHERE scope = 'tenant:tinybudget'")[0][0]
        assert spent == 20 * 3000 + 2000 * 15000
        # Then each request is fitted to what is left and uses all of it (the mock writes up to its cap),
        # until less than 16 output tokens' worth is left: refused, saying why and what to do.
        refusal = None
        for n in range(8):
            r = post(c, stack, "tinybudget", "#mock " + json.dumps({"chunks": 100000}), model="pricey")
            if r.status_code == 429:
                refusal = r
                break
            assert r.status_code == 200, r.text
            assert r.json()["usage"]["completion_tokens"] == int(r.headers["x-tenantgate-max-tokens"])
            assert r.json()["choices"][0]["finish_reason"] == "length"
            settled(stack, "tinybudget", 2 + n)
        assert refusal is not None
        error = refusal.json()["error"]
        assert error["code"] == "budget_exceeded" and error["type"] == "tenant_budget_exceeded"
        assert re.search(r"daily_usd budget has \$0\.0000\d* left of \$0\.0500", error["message"]), error
        assert "worst case" in error["message"] and "Not even 16 output tokens fit" in error["message"]
        # Settled spend reached 50 and 80 %, the refusal says the budget is used up: each announced once.
        assert wait_until(lambda: thresholds(stack, "tinybudget")
                          == [("daily_usd", 50), ("daily_usd", 80), ("daily_usd", 100)]), thresholds(stack, "tinybudget")
        spent = stack.sql("SELECT used_nano FROM budget_counters WHERE scope = 'tenant:tinybudget'")[0][0]
        assert 49_000_000 < spent <= 50_000_000
    # Each threshold is in the tenant's audit chain once.
    rows = stack.sql("SELECT body FROM audit_events WHERE tenant = 'tinybudget' AND kind = 'budget_threshold'")
    assert sorted(json.loads(b)["percent"] for (b,) in rows) == [50, 80, 100]


def test_when_short_refuse_names_the_worst_case_what_remains_and_what_fits(stack):
    with stack.client() as c:
        r = post(c, stack, "tinyrefuse", "hello there", model="pricey")
        assert r.status_code == 429, r.text
        message = r.json()["error"]["message"]
        assert "daily_usd budget has $0.0500 left of $0.0500" in message
        assert "worst case is $0.06" in message and "4096 output tokens" in message
        assert "At most 33" in message and "max_tokens of 33" in message
        # Following the advice is served.
        fits = int(message.split("At most ")[1].split(" ")[0])
        ok = post(c, stack, "tinyrefuse", "hello there", model="pricey", max_tokens=fits)
        assert ok.status_code == 200, ok.text
        assert "x-tenantgate-max-tokens" not in ok.headers


def test_refusals_and_failures_are_counted_apart(stack):
    """Before: 4 rate-limit refusals among 10 requests were a 40 % "error rate" in `usage` and on the
    dashboard. Refusals (4xx) and failures (5xx) now have their own columns; an error rate counts failures."""
    def usage(tenant):
        rows = json.loads(stack.cli("usage", "--tenant", tenant, "--json").stdout)
        return rows[0] if rows else {"requests": 0, "refused": 0, "failed": 0}

    before = usage("splitcount")
    done = stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'splitcount'")[0][0]
    with stack.client() as c:
        codes = [post(c, stack, "splitcount", f"split {i}").status_code for i in range(4)]
    assert sorted(codes).count(429) >= 2
    settled(stack, "splitcount", done + 4)
    after = usage("splitcount")
    assert after["requests"] - before["requests"] == 4
    assert after["refused"] - before["refused"] == codes.count(429)
    assert after["failed"] - before["failed"] == 0
    # A failure (the backend is down) is a failure.
    acme_before = usage("acme")
    done = stack.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'acme'")[0][0]
    with stack.client() as c:
        failed = post(c, stack, "acme", "split failure", model="gone")
    assert failed.status_code >= 500
    settled(stack, "acme", done + 1)
    assert usage("acme")["failed"] - acme_before["failed"] == 1
    # The table says the same; an unknown tenant is "not found" (exit 3), not an empty table.
    table = stack.cli("usage", "--tenant", "splitcount").stdout.splitlines()
    assert table[0].split()[:4] == ["tenant", "requests", "refused", "failed"]
    missing = stack.cli("usage", "--tenant", "nosuch", check=False)
    assert missing.returncode == 3 and missing.stderr.startswith("error: unknown tenant 'nosuch'")
