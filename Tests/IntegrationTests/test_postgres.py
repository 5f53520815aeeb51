"""The gateway on PostgreSQL (TENANTGATE_DATABASE_URL), and two complete stacks (two homes, two nginx, two
worker pools, as two hosts would be) sharing one PostgreSQL database. scripts/test starts the server."""
import os
import signal
import subprocess
import threading
import time

import httpx
import pytest

from conftest import BIN, PG_URL, Stack, pg_database, read_pg, read_sql, wait_until
from test_capacity import auth, hammer

pytestmark = pytest.mark.skipif(not PG_URL, reason="needs TG_TEST_POSTGRES_URL (scripts/test starts a server)")


@pytest.fixture(scope="module")
def two_stacks():
    first = Stack(workers=2, threads=32, database_url=pg_database()).start()
    second = Stack(workers=2, threads=32, shares=first).start()
    yield first, second
    second.stop()
    first.stop()


def chat(stack, tenant, content, model="fast"):
    return httpx.post(f"{stack.base}/tenant/{tenant}/v1/chat/completions", verify=False, timeout=30,
                      headers=auth(stack, tenant),
                      json={"model": model, "messages": [{"role": "user", "content": content}]})


def test_both_stacks_serve_from_one_store_and_record_there(two_stacks):
    a, b = two_stacks
    assert not (a.home / "tenantgate.db").exists() and not (b.home / "tenantgate.db").exists()
    for stack, word in ((a, "from-a"), (b, "from-b")):
        r = chat(stack, "acme", word)
        assert r.status_code == 200, r.text
        models = httpx.get(f"{stack.base}/tenant/acme/v1/models", verify=False, headers=auth(stack, "acme"))
        assert models.status_code == 200 and models.json()["data"]
    # One execution log: both requests are in it, whichever stack reads it.
    assert wait_until(lambda: a.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'acme'")[0][0] >= 2)
    assert b.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'acme'") \
        == a.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'acme'")
    # The documents API says plainly that collections are SQLite-only here.
    r = httpx.get(f"{a.base}/tenant/docs/v1/collections", verify=False, headers=auth(a, "docs"))
    assert r.status_code in (200, 503)
    r = httpx.post(f"{a.base}/tenant/docs/v1/collections", verify=False, headers=auth(a, "docs"),
                   json={"name": "kb"})
    assert r.status_code == 503 and "PostgreSQL" in r.json()["error"]["message"]


def test_a_revoked_key_stops_working_on_the_other_stack_within_a_second(two_stacks):
    a, b = two_stacks
    created = a.cli("key", "create", "globex").stdout.strip().splitlines()[-1]
    headers = {"Authorization": f"Bearer {created}"}
    url = "/tenant/globex/v1/models"
    assert wait_until(lambda: httpx.get(b.base + url, verify=False, headers=headers).status_code == 200, timeout=2)
    key_id = a.sql("SELECT id FROM api_keys WHERE tenant_id = 'globex' ORDER BY created_at DESC, id LIMIT 1")[0][0]
    a.cli("key", "revoke", key_id)
    assert wait_until(lambda: httpx.get(b.base + url, verify=False, headers=headers).status_code == 401,
                      timeout=1.0, interval=0.05)


def test_limits_and_budgets_hold_across_both_stacks(two_stacks):
    a, b = two_stacks

    def both(tenant, total, marker):
        statuses = []
        threads = [threading.Thread(target=lambda s=s, m=marker + s.home.name: statuses.extend(
            hammer(s, tenant, total // 2, m, clients=16))) for s in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return statuses

    def settled(tenant, count):
        return a.sql("SELECT COUNT(*) FROM executions WHERE tenant = ?", tenant)[0][0] == count \
            and a.sql("SELECT COUNT(*) FROM reservations WHERE tenant = ?", tenant)[0][0] == 0

    # A per-minute limit of 600, 1,000 requests split over the two stacks at once.
    statuses = both("lease-rpm", 1000, "pg-rpm")
    ok = statuses.count(200)
    assert set(statuses) <= {200, 429} and ok <= 600 and ok >= 300, (ok, sorted(set(statuses)))
    assert wait_until(lambda: settled("lease-rpm", 1000), timeout=15)
    assert a.sql("SELECT SUM(amount) FROM rate_log WHERE tenant = 'lease-rpm' AND kind = 'r'")[0][0] == ok
    upstream = sum(1 for s in (a, b) for q in s.upstream_requests() if "pg-rpm" in str(q["body"]))
    assert upstream == ok

    # A hard daily budget of 6,000 tokens: never exceeded; the counter equals the rows.
    statuses = both("lease-budget", 1000, "pg-budget")
    assert set(statuses) <= {200, 429} and statuses.count(429) > 0, sorted(set(statuses))
    assert wait_until(lambda: settled("lease-budget", 1000), timeout=15)
    used, served = a.sql("SELECT COALESCE(SUM(tokens_in + tokens_out), 0), COUNT(*) FROM executions "
                         "WHERE tenant = 'lease-budget' AND status = 200")[0]
    counter = a.sql("SELECT used_tokens FROM budget_counters WHERE scope = 'tenant:lease-budget'")[0][0]
    assert used <= 6000 and counter == used and served == statuses.count(200)


def test_one_stack_killed_mid_load_loses_nothing_and_its_leases_expire():
    """Stack B's pool is SIGKILLed while both stacks serve a leased budget: A keeps serving, every answer
    either gave has its row, and once B's leases expire (backend timeout + 60 s) A's sweep returns what
    they held, leaving the budget counter equal to the rows."""
    a = Stack(workers=2, threads=32, database_url=pg_database()).start()
    b = Stack(workers=2, threads=32, shares=a).start()
    try:
        results = {}
        threads = [threading.Thread(target=lambda s=s, n=n: results.__setitem__(n, hammer(
            s, "lease-kill", 600, f"pg-kill-{n}", clients=8, model="fast"))) for s, n in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        rows = "SELECT COUNT(*) FROM executions WHERE tenant = 'lease-kill'"
        assert wait_until(lambda: a.sql(rows)[0][0] >= 100, timeout=30)
        assert a.sql("SELECT COUNT(*) FROM reservations WHERE tenant = 'lease-kill'")[0][0] > 0  # leases held
        killed_at = time.time()
        for pid in [b.pool.pid] + b.worker_pids():
            os.kill(pid, signal.SIGKILL)
        for t in threads:
            t.join()
        # A never failed; B's clients saw it die (nginx: 502) after some answers.
        assert set(results["a"]) == {200}, sorted(set(results["a"]))
        assert results["b"].count(200) > 0 and set(results["b"]) - {200} <= {502, 503, 504}
        # Every answer has its row (a row may outlive an answer B could not finish sending).
        ok = results["a"].count(200) + results["b"].count(200)
        count = a.sql(rows)[0][0]
        assert ok <= count <= ok + b.threads * b.workers, (ok, count)
        # B's leases expire and A's sweep gives back what they held: nothing stays reserved, and the
        # counter is exactly the rows' tokens.
        deadline = 3 + 60 + 30  # the backend's timeout + 60 s, then the sweep
        assert wait_until(lambda: not a.sql("SELECT 1 FROM reservations WHERE tenant = 'lease-kill'"),
                          timeout=max(1, deadline - (time.time() - killed_at)), interval=1)
        used, reserved = a.sql("SELECT used_tokens, reserved_tokens FROM budget_counters "
                               "WHERE scope = 'tenant:lease-kill'")[0]
        tokens = a.sql("SELECT SUM(tokens_in + tokens_out) FROM executions WHERE tenant = 'lease-kill'")[0][0]
        assert reserved == 0 and used == tokens, (used, reserved, tokens)
        r = chat(a, "lease-kill", "after the other stack died")
        assert r.status_code == 200, r.text
    finally:
        b.stop()
        a.stop()


def test_db_copy_moves_a_store_to_postgres_and_back(fresh_stack):
    s = fresh_stack
    for i in range(5):
        assert chat(s, "acme", f"copy me {i}").status_code == 200
    assert wait_until(lambda: s.sql("SELECT COUNT(*) FROM executions WHERE tenant = 'acme'")[0][0] == 5)
    s.pool.send_signal(15)  # the copy is made with the gateway stopped
    assert s.pool.wait(15) == 0
    sqlite = s.home / "tenantgate.db"
    pg = pg_database()
    back = s.home / "back.db"
    env = {k: v for k, v in s.env.items() if k != "TENANTGATE_DATABASE_URL"}

    def run(*args):
        return subprocess.run([BIN, *args], env=env, capture_output=True, text=True)

    there = run("db", "copy", "--from", f"sqlite:{sqlite}", "--to", pg)
    assert there.returncode == 0, there.stderr
    assert "executions\t5" in there.stdout and "checked" in there.stdout
    # Copying into a store that is not empty is refused and changes nothing.
    again = run("db", "copy", "--from", f"sqlite:{sqlite}", "--to", pg)
    assert again.returncode == 1 and "not empty" in again.stderr
    home = run("db", "copy", "--from", pg, "--to", f"sqlite:{back}")
    assert home.returncode == 0, home.stderr
    # The three stores export the same configuration and hold the same books.
    original = subprocess.run([BIN, "config", "export", "--db", str(sqlite)], env=env, capture_output=True,
                              text=True).stdout
    on_pg = subprocess.run([BIN, "config", "export"], env={**env, "TENANTGATE_DATABASE_URL": pg},
                           capture_output=True, text=True).stdout
    returned = subprocess.run([BIN, "config", "export", "--db", str(back)], env=env, capture_output=True,
                              text=True).stdout
    assert original and original == on_pg == returned
    books = "SELECT COUNT(*), SUM(tokens_in + tokens_out), SUM(cost_nano) FROM executions"
    assert read_sql(back, books) == read_pg(pg, books) == s.sql(books)
    assert read_sql(back, "SELECT COUNT(*) FROM api_keys") == read_pg(pg, "SELECT COUNT(*) FROM api_keys")


def test_the_admin_pages_read_a_postgres_store(two_stacks):
    from test_admin import PASSWORD, Browser
    a, b = two_stacks
    a.cli("admin", "password", "--user", "root", input=PASSWORD + "\n")
    assert chat(a, "acme", "for the admin pages").status_code == 200
    # Logged in on one host, the admin pages of the other read the same store.
    browser = Browser(b)
    assert browser.login().status_code == 303
    for path in ("/admin/", "/admin/executions", "/admin/executions?tenant=acme", "/admin/executions?status=failed", "/admin/executions?status=refused",
                 "/admin/tenants/acme", "/admin/audit"):
        r = browser.get(path)
        assert r.status_code == 200, (path, r.text[:300])
    assert "acme" in browser.get("/admin/executions?tenant=acme").text
    r = browser.post("/admin/tenants/acme/keys", {"key_name": "from-the-page", "_once": browser.once("acme")})
    assert r.status_code == 303, r.text[:300]
    assert "class=\"secret\"" in browser.get(r.headers["location"]).text
    assert a.sql("SELECT COUNT(*) FROM api_keys WHERE tenant_id = 'acme' AND name = 'from-the-page'")[0][0] == 1
    assert a.sql("SELECT COUNT(*) FROM admin_audit WHERE \"user\" = 'root'")[0][0] >= 1
